/* A client to be killed mid-request: opens four files and a directory listing in DIR on the
 * user-level path, says "ready", then reads them in a loop until it is killed. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2 || chdir(argv[1]) != 0) {
        perror("chdir");
        return 2;
    }
    int fds[4];
    char name[32], buf[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "f%d", i);
        fds[i] = open(name, O_RDWR | O_CREAT, 0644);
        if (fds[i] < 0 || pwrite(fds[i], "data", 4, 0) != 4) {
            perror(name);
            return 1;
        }
    }
    DIR *d = opendir(".");
    if (!d || !readdir(d)) {
        perror("opendir");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (unsigned long i = 0;; i++) {
        if (pread(fds[i % 4], buf, sizeof buf, 0) != 4) {
            perror("pread");
            return 1;
        }
    }
}
