/* A descriptor inherited across each variadic exec (execl, execlp, execle) keeps writing to
 * its file: a chain of this program's own stages, each writing a line and exec'ing the next,
 * with lists long enough to go past the registers onto the stack. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char self[4096];

static void say(int fd, const char *line) {
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) { perror("write"); exit(1); }
}

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) { perror("readlink"); return 1; }
    self[n] = 0;
    char line[512];
    if (argc == 1) {
        int fd = open("exec.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0) { perror("open"); return 1; }
        say(fd, "opened\n");
        char fds[16];
        snprintf(fds, sizeof fds, "%d", fd);
        execl(self, "exec", "l", fds, "a1", "a2", "a3", "a4", "a5", "a6", (char *)NULL);
        perror("execl");
        return 1;
    }
    int fd = atoi(argv[2]);
    if (strcmp(argv[1], "l") == 0) {
        snprintf(line, sizeof line, "execl: argc %d, last %s\n", argc, argv[argc - 1]);
        say(fd, line);
        execlp(self, "exec", "lp", argv[2], (char *)NULL);
        perror("execlp");
        return 1;
    }
    if (strcmp(argv[1], "lp") == 0) {
        say(fd, "execlp\n");
        char *env[] = {"MARK=from-execle", "LC_ALL=C", NULL};
        execle(self, "exec", "le", argv[2], "b1", "b2", "b3", "b4", "b5", "b6", "b7", (char *)NULL, env);
        perror("execle");
        return 1;
    }
    if (strcmp(argv[1], "le") == 0) {
        const char *mark = getenv("MARK");
        snprintf(line, sizeof line, "execle: argc %d, last %s, MARK=%s, PATH %s\n", argc, argv[argc - 1], mark ? mark : "-", getenv("PATH") ? "set" : "unset");
        say(fd, line);
        snprintf(line, sizeof line, "echo from-sh >&%s", argv[2]);
        execl("/bin/sh", "sh", "-c", line, (char *)NULL);
        perror("execl sh");
        return 1;
    }
    return 2;
}
