/* The file ioctls a program makes on a regular file of a pool mount: the same answers under
 * the preload library as on the mount's FUSE path (which has no attribute flags, extent map
 * or clones). Run in the current directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void res(const char *what, long r) {
    if (r < 0) printf("%s: -1 %s\n", what, strerrorname_np(errno));
    else printf("%s: %ld\n", what, r);
    errno = 0;
}

int main(void) {
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (write(fd, "hello", 5) != 5) return 1;
    long flags = 0;
    res("FS_IOC_GETFLAGS", ioctl(fd, FS_IOC_GETFLAGS, &flags));
    res("FS_IOC_SETFLAGS", ioctl(fd, FS_IOC_SETFLAGS, &flags));
    struct fsxattr fa;
    memset(&fa, 0, sizeof fa);
    res("FS_IOC_FSGETXATTR", ioctl(fd, FS_IOC_FSGETXATTR, &fa));
    res("FS_IOC_FSSETXATTR", ioctl(fd, FS_IOC_FSSETXATTR, &fa));
    int version = 0;
    res("FS_IOC_GETVERSION", ioctl(fd, FS_IOC_GETVERSION, &version));
    struct {
        struct fiemap map;
        struct fiemap_extent extents[4];
    } fm;
    memset(&fm, 0, sizeof fm);
    fm.map.fm_length = 4096;
    fm.map.fm_extent_count = 4;
    res("FS_IOC_FIEMAP", ioctl(fd, FS_IOC_FIEMAP, &fm));
    int bsz = 0;
    res("FIGETBSZ", ioctl(fd, FIGETBSZ, &bsz));
    res("block size", bsz);
    res("FIOCLEX", ioctl(fd, FIOCLEX));
    res("FD_CLOEXEC", fcntl(fd, F_GETFD));
    res("FIONCLEX", ioctl(fd, FIONCLEX));
    res("FD_CLOEXEC", fcntl(fd, F_GETFD));
    int on = 1, off = 0;
    res("FIONBIO on", ioctl(fd, FIONBIO, &on));
    res("O_NONBLOCK", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    res("FIONBIO off", ioctl(fd, FIONBIO, &off));
    res("O_NONBLOCK", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    int g = open("g", O_RDWR | O_CREAT | O_TRUNC, 0644);
    res("FICLONE", ioctl(g, FICLONE, fd));
    struct winsize ws;
    res("TIOCGWINSZ", ioctl(fd, TIOCGWINSZ, &ws));
    char back[6] = {0};
    res("pread after", pread(fd, back, 5, 0));
    printf("%s\n", back);
    return 0;
}
