/* stdio on files: what fopen'ed streams must do, whichever path serves them. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

int main(void) {
    FILE *f = fopen("stdio.txt", "w");
    if (!f) { perror("fopen w"); return 1; }
    for (int i = 0; i < 1000; i++) fprintf(f, "line %d\n", i);
    struct stat st;
    if (fstat(fileno(f), &st) != 0) { perror("fstat"); return 1; }
    fclose(f);
    f = fopen("stdio.txt", "r");
    if (!f) { perror("fopen r"); return 1; }
    char buf[64];
    int lines = 0;
    while (fgets(buf, sizeof buf, f)) lines++;
    printf("lines %d at %ld\n", lines, ftell(f));
    fseek(f, -9, SEEK_END);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    printf("tail [%s] eof %d\n", strtok(buf, "\n"), feof(f) != 0);
    rewind(f);
    printf("first [%s]", fgets(buf, sizeof buf, f) ? strtok(buf, "\n") : "?");
    printf(" fileno ok %d\n", fileno(f) > 2);
    fclose(f);
    f = fopen("stdio.txt", "a+");
    fputs("appended\n", f);
    fseek(f, 0, SEEK_SET);
    printf("after append: [%s]\n", fgets(buf, sizeof buf, f) ? strtok(buf, "\n") : "?");
    fclose(f);
    int fd = open("stdio.txt", O_RDONLY);
    f = fdopen(fd, "r");
    fseek(f, -9, SEEK_END);
    printf("fdopen: [%s]\n", fgets(buf, sizeof buf, f) ? strtok(buf, "\n") : "?");
    fclose(f);
    printf("missing: %d\n", fopen("no/such/file", "r") == NULL);
    f = fopen("stdio.txt", "wx");
    printf("exclusive: %d\n", f == NULL);
    return 0;
}
