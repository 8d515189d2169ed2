#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "polytropon.h"

int main(int argc, char **argv) {
    char path[4096], buf[64];
    snprintf(path, sizeof path, "%s/etc/motd", argv[1]);
    int fd = polytropon_open(path, O_RDONLY, 0);
    if (fd < 0) { perror("open motd"); return 1; }
    ssize_t n = polytropon_read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("read %zd: %s", n, buf);
    polytropon_close(fd);

    snprintf(path, sizeof path, "%s/notes", argv[1]);
    fd = polytropon_open(path, O_CREAT | O_EXCL | O_RDWR, 0640);
    if (fd < 0) { perror("create"); return 1; }
    if (fd <= 2) { fprintf(stderr, "fd %d collides with stdio\n", fd); return 1; }
    polytropon_write(fd, "hello ", 6);
    polytropon_write(fd, "world\n", 6);
    printf("seek end %ld\n", (long)polytropon_lseek(fd, 0, SEEK_END));
    polytropon_lseek(fd, 6, SEEK_SET);
    n = polytropon_read(fd, buf, 5);
    buf[n] = 0;
    printf("reread %s\n", buf);
    polytropon_fsync(fd);
    polytropon_close(fd);

    struct stat st;
    if (polytropon_stat(path, &st) != 0) { perror("stat"); return 1; }
    printf("size %ld mode %o\n", (long)st.st_size, st.st_mode & 07777);
    if (polytropon_open(path, O_CREAT | O_EXCL | O_RDWR, 0600) >= 0 || errno != EEXIST) { printf("no EEXIST\n"); return 1; }
    if (polytropon_open("/not/under/a/mount", O_RDONLY, 0) >= 0 || errno != EXDEV) { printf("no EXDEV\n"); return 1; }
    if (polytropon_read(12345, buf, 1) >= 0 || errno != EBADF) { printf("no EBADF\n"); return 1; }
    snprintf(path, sizeof path, "%s/etc/motd", argv[1]);
    if (polytropon_unlink(path) != 0) { perror("unlink"); return 1; }
    if (polytropon_stat(path, &st) == 0 || errno != ENOENT) { printf("still there\n"); return 1; }
    printf("ok\n");
    return 0;
}
