/* Every libc entry point the preload library replaces, called on purpose (issue 21): run in a
 * working directory (argv[1]) on a plain directory and under the library on a pool mount, the
 * output must be the same line for line. Each line is one call and its result: the return
 * value, the errno name, and what the call did (bytes, sizes, modes), never what differs
 * between two filesystems (inode and device numbers, block counts, times not set here).
 *
 * The program also says which requests it expects the service to count for it:
 * `expect user OP N` (at least N requests OP on the user-level path) and `expect fuse OP N`
 * (at least N on the FUSE mount: the hand-overs to the kernel). Built plain (-O0) and with
 * -O2 -D_FORTIFY_SOURCE=2, where glibc's headers turn some calls into their checked forms
 * (__open_2, __read_chk, __realpath_chk, ...); those are also called by name below. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/fs.h>
#include <utime.h>

/* readdir_r and readdir64_r are deprecated, and replaced all the same. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

/* The fortified entry points, called by name (a plain build never reaches them otherwise). */
extern int __open_2(const char *, int);
extern int __open64_2(const char *, int);
extern int __openat_2(int, const char *, int);
extern int __openat64_2(int, const char *, int);
extern ssize_t __read_chk(int, void *, size_t, size_t);
extern ssize_t __pread_chk(int, void *, size_t, off_t, size_t);
extern ssize_t __pread64_chk(int, void *, size_t, off64_t, size_t);
extern char *__realpath_chk(const char *, char *, size_t);

/* The stat family older binaries call (_STAT_VER is 1 on x86-64; glibc 2.33+ keeps them for
 * those binaries, and Debian's still lets new programs link them). */
#define STAT_VER 1
extern int __xstat(int, const char *, struct stat *);
extern int __xstat64(int, const char *, struct stat64 *);
extern int __lxstat(int, const char *, struct stat *);
extern int __lxstat64(int, const char *, struct stat64 *);
extern int __fxstat(int, int, struct stat *);
extern int __fxstat64(int, int, struct stat64 *);
extern int __fxstatat(int, int, const char *, struct stat *, int);
extern int __fxstatat64(int, int, const char *, struct stat64 *, int);

/* ---- output ---------------------------------------------------------------------------- */

/* One call's result: its value, or -1 and the errno name. */
static void res(const char *what, long r) {
    int e = errno;
    if (r < 0)
        printf("%s: %ld %s\n", what, r, strerrorname_np(e));
    else
        printf("%s: %ld\n", what, r);
}

/* A call that returns an error number (posix_fallocate, posix_spawn). */
static void res_num(const char *what, int rc) {
    printf("%s: %s\n", what, rc ? strerrorname_np(rc) : "0");
}

static void bytes(const char *what, const void *p, long n) {
    const unsigned char *b = p;
    printf("%s: %ld \"", what, n);
    for (long i = 0; i < n; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' && b[i] != '\\')
            putchar(b[i]);
        else
            printf("\\x%02x", b[i]);
    }
    printf("\"\n");
}

/* What a stat answer says that two filesystems agree on. */
static void st_line(const char *what, int r, const struct stat *st) {
    if (r != 0) {
        res(what, r);
        return;
    }
    if (S_ISDIR(st->st_mode))
        printf("%s: dir mode %o uid %u gid %u\n", what, st->st_mode & 07777, st->st_uid, st->st_gid);
    else
        printf("%s: type %o mode %o size %lld nlink %lu uid %u gid %u\n", what, st->st_mode & S_IFMT, st->st_mode & 07777,
               (long long)st->st_size, (unsigned long)st->st_nlink, st->st_uid, st->st_gid);
}

static void st64_line(const char *what, int r, const struct stat64 *st) {
    struct stat s = {0};
    s.st_mode = st->st_mode;
    s.st_size = st->st_size;
    s.st_nlink = st->st_nlink;
    s.st_uid = st->st_uid;
    s.st_gid = st->st_gid;
    st_line(what, r, &s);
}

/* statx: what every filesystem fills (the mask bits beyond the basic ones differ). */
static void statx_line(const char *what, int r, const struct statx *stx) {
    if (r != 0) {
        res(what, r);
        return;
    }
    printf("%s: basic %d type %o mode %o size %llu nlink %u uid %u gid %u\n", what, (stx->stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS,
           stx->stx_mode & S_IFMT, stx->stx_mode & 07777, (unsigned long long)stx->stx_size, stx->stx_nlink, stx->stx_uid, stx->stx_gid);
}

/* ---- what the service should count ---------------------------------------------------- */

static struct { const char *side, *op; int n; } tally[64];
static int ntally;

static void expect(const char *side, const char *op, int n) {
    for (int i = 0; i < ntally; i++)
        if (!strcmp(tally[i].side, side) && !strcmp(tally[i].op, op)) {
            tally[i].n += n;
            return;
        }
    tally[ntally].side = side;
    tally[ntally].op = op;
    tally[ntally++].n = n;
}

/* U: one request on the user-level path; K: one on the FUSE mount (a hand-over). */
#define U(op) expect("user", op, 1)
#define K(op) expect("fuse", op, 1)
/* M: at most one request on the FUSE mount (what the kernel resolves: a final symbolic link
 * followed, a final "."; a write to a handed-over file, which FUSE passthrough gives the
 * kernel's backing file without a request). */
#define M(op) expect("fuse-most", op, 1)

/* ---- which path a descriptor is on ------------------------------------------------------ */

/* Whether the library is loaded (its direct API is there). */
static int preloaded;
/* The mount's own device, as the kernel shows it (a raw stat of the working directory). */
static dev_t mount_dev;

/* Under the library, checks that `fd` is one of its descriptors (`ours`) or the kernel's (a
 * file handed over, a directory): the kernel sees each of the library's as a duplicate of
 * /dev/null, or, for a file written on and on, as the backing file the service passed (a
 * regular file of another device than the mount's), which a raw fstat system call, past the
 * library, shows. A mismatch is reported on stderr ("WRONG PATH"), which the test refuses; on
 * a plain directory nothing is checked. */
static void on_path(const char *what, int fd, int ours) {
    if (!preloaded) return;
    struct stat st;
    int raw = syscall(SYS_fstat, fd, &st) == 0;
    int dev_null = raw && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
    int passed = raw && S_ISREG(st.st_mode) && st.st_dev != mount_dev;
    if ((dev_null || passed) != ours)
        fprintf(stderr, "WRONG PATH: %s: descriptor %d is %s\n", what, fd, ours ? "the kernel's, not the library's" : "still the library's, not handed over");
}
#define OURS(what, fd) on_path(what, fd, 1)
#define KERNELS(what, fd) on_path(what, fd, 0)

/* ---- helpers ---------------------------------------------------------------------------- */

/* The whole of a (small) file, read on the path the caller is on. */
static void show(const char *path) {
    char buf[4096];
    int fd = open(path, O_RDONLY);
    U("open_path");
    if (fd < 0) {
        res(path, -1);
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    U("read");
    bytes(path, buf, n);
    close(fd);
    U("release");
}

static int create(const char *path, int flags) {
    int fd = open(path, O_CREAT | O_TRUNC | flags, 0644);
    U("open_path");
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    OURS(path, fd);
    return fd;
}

static void put(int fd, const char *s) {
    ssize_t n = write(fd, s, strlen(s));
    if (n != (ssize_t)strlen(s)) {
        perror("write");
        exit(1);
    }
}

static int status_of(pid_t pid) {
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char base[PATH_MAX];

/* -1, where the compiler would refuse the constant (bad arguments passed on purpose). */
int minus_one = -1;

/* A path realpath gave, relative to the working directory's own. */
static void real_line(const char *what, const char *r) {
    if (!r) {
        res(what, -1);
        return;
    }
    size_t n = strlen(base);
    printf("%s: %s%s\n", what, strncmp(r, base, n) ? "OUTSIDE " : "<wd>", strncmp(r, base, n) ? r : r + n);
}

/* ---- data calls on files of ours --------------------------------------------------------- */

static void data_calls(void) {
    char buf[256];
    struct stat st;
    int fd = create("a.txt", O_RDWR | O_CLOEXEC);
    res("write", write(fd, "hello world\n", 12)), U("write");
    res("pwrite", pwrite(fd, "HELLO", 5, 0)), U("write");
    res("pwrite64", pwrite64(fd, "W", 1, 6)), U("write");
    res("lseek cur", lseek(fd, 0, SEEK_CUR));
    res("lseek end", lseek(fd, 0, SEEK_END)), U("getattr");
    res("lseek64 set", lseek64(fd, 3, SEEK_SET));
    res("lseek negative", lseek(fd, -100, SEEK_CUR));
    res("lseek bad whence", lseek(fd, 0, 77));
    long n = pread(fd, buf, sizeof buf, 0);
    U("read");
    bytes("pread", buf, n);
    n = pread64(fd, buf, 5, 6), U("read");
    bytes("pread64", buf, n);
    res("pread negative offset", pread(fd, buf, 1, -1));
    lseek(fd, 6, SEEK_SET);
    n = read(fd, buf, 5), U("read");
    bytes("read", buf, n);
    lseek(fd, 0, SEEK_SET);
    size_t five = 5;
    n = __read_chk(fd, buf, five, sizeof buf), U("read");
    bytes("__read_chk", buf, n);
    n = __pread_chk(fd, buf, five, 6, sizeof buf), U("read");
    bytes("__pread_chk", buf, n);
    n = __pread64_chk(fd, buf, 3, 0, sizeof buf), U("read");
    bytes("__pread64_chk", buf, n);

    /* Vectored forms: at the shared offset (5, after __read_chk), and positional. */
    struct iovec w3[3] = {{"ab", 2}, {"cd", 2}, {"ef", 2}};
    res("writev", writev(fd, w3, 3)), U("write");
    res("lseek after writev", lseek(fd, 0, SEEK_CUR));
    char r1[3], r2[4], r3[100];
    struct iovec rv[3] = {{r1, 3}, {r2, 4}, {r3, 100}};
    lseek(fd, 0, SEEK_SET);
    n = readv(fd, rv, 3), U("read");
    printf("readv: %ld\n", n);
    bytes("readv 0", r1, 3), bytes("readv 1", r2, 4), bytes("readv 2", r3, n - 7);
    res("readv offset", lseek(fd, 0, SEEK_CUR));
    res("readv bad count", readv(fd, rv, minus_one));
    memset(r1, 0, 3), memset(r2, 0, 4);
    struct iovec rv2[2] = {{r1, 3}, {r2, 4}};
    n = preadv(fd, rv2, 2, 4), U("read");
    bytes("preadv", r1, 3), bytes("preadv 1", r2, 4);
    n = preadv64(fd, rv2, 1, 1), U("read");
    bytes("preadv64", r1, n);
    struct iovec w2[2] = {{"XY", 2}, {"Z", 1}};
    res("pwritev", pwritev(fd, w2, 2, 12)), U("write");
    res("pwritev64", pwritev64(fd, w2, 1, 15)), U("write");
    res("offset after positional", lseek(fd, 0, SEEK_CUR));
    /* preadv2/pwritev2 without flags: the library's (offset -1: the shared offset). */
    memset(r1, 0, 3);
    n = preadv2(fd, rv2, 1, 0, 0), U("read");
    bytes("preadv2", r1, n);
    lseek(fd, 2, SEEK_SET);
    n = preadv2(fd, rv2, 1, -1, 0), U("read");
    bytes("preadv2 shared offset", r1, n);
    res("offset after preadv2 -1", lseek(fd, 0, SEEK_CUR));
    res("pwritev2 shared offset", pwritev2(fd, w2, 1, -1, 0)), U("write");
    res("offset after pwritev2 -1", lseek(fd, 0, SEEK_CUR));
    res("pwritev2", pwritev2(fd, w2, 2, 17, 0)), U("write");
    n = preadv64v2(fd, rv2, 1, 17, 0), U("read");
    bytes("preadv64v2", r1, n);
    res("pwritev64v2", pwritev64v2(fd, w2, 1, 20, 0)), U("write");
    show("a.txt");

    res("ftruncate", ftruncate(fd, 30)), U("truncate");
    st_line("fstat", fstat(fd, &st), &st), U("getattr");
    res("ftruncate64", ftruncate64(fd, 24)), U("truncate");
    struct stat64 st64;
    st64_line("fstat64", fstat64(fd, &st64), &st64), U("getattr");
    res("ftruncate negative", ftruncate(fd, -1));
    res("fsync", fsync(fd)), U("fsync");
    res("fdatasync", fdatasync(fd)), U("fsync");
    res("sync_file_range write", sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)), U("fsync");
    res("sync_file_range wait", sync_file_range(fd, 0, 4096, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER));
    res("sync_file_range negative", sync_file_range(fd, -1, 0, SYNC_FILE_RANGE_WRITE));
    res("sync_file_range bad flags", sync_file_range(fd, 0, 0, 0x80));
    res_num("posix_fadvise", posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL));
    res_num("posix_fadvise64", posix_fadvise64(fd, 0, 4096, POSIX_FADV_WILLNEED));
    res("readahead", readahead(fd, 0, 4096));
    res("isatty", isatty(fd));
    res("getfl", fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND));
    res("getfd", fcntl(fd, F_GETFD));
    res("setfl append", fcntl(fd, F_SETFL, O_APPEND));
    res("getfl after", fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND));
    lseek(fd, 0, SEEK_SET);
    res("append write", write(fd, "++", 2)), U("write");
    res("append offset", lseek(fd, 0, SEEK_CUR));
    res("pwrite appends", pwrite(fd, "!", 1, 0)), U("write");
    fcntl(fd, F_SETFL, 0);

    /* Descriptors naming the same open file. */
    int d = dup(fd);
    res("dup", d >= 0);
    lseek(fd, 1, SEEK_SET);
    res("dup shares offset", lseek(d, 0, SEEK_CUR));
    n = read(d, buf, 4), U("read");
    bytes("read through dup", buf, n);
    res("offset moved for both", lseek(fd, 0, SEEK_CUR));
    res("dup2", dup2(fd, 40));
    res("dup2 same", dup2(fd, fd) == fd);
    res("dup3", dup3(fd, 41, O_CLOEXEC));
    res("dup3 cloexec", fcntl(41, F_GETFD));
    res("dup3 same", dup3(fd, fd, 0));
    res("dup3 bad flags", dup3(fd, 42, O_APPEND));
    int dc = fcntl(fd, F_DUPFD_CLOEXEC, 50);
    res("F_DUPFD_CLOEXEC", dc >= 50);
    int d64 = fcntl64(fd, F_DUPFD, 60);
    res("fcntl64 F_DUPFD", d64 >= 60);
    OURS("dup", d), OURS("dup2", 40), OURS("dup3", 41), OURS("F_DUPFD_CLOEXEC", dc), OURS("fcntl64 F_DUPFD", d64);
    n = pread(41, buf, 5, 0), U("read");
    bytes("pread through dup3", buf, n);
    n = pread(40, buf, 2, 3), U("read");
    bytes("pread through dup2", buf, n);
    res("close dup", close(d));
    res("close dup2", close(40));
    res("close dup3", close(41));
    res("close dup64", close(d64));
    for (int i = 50; i < 60; i++)
        if (fcntl(i, F_GETFD) >= 0) close(i);

    /* Attributes of the open file. */
    struct timeval tv[2] = {{1000000000, 250000}, {1100000000, 500000}};
    res("futimes", futimes(fd, tv)), U("setattr");
    fstat(fd, &st), U("getattr");
    printf("futimes times: %ld.%09ld %ld.%09ld\n", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timespec ts[2] = {{1200000000, 7}, {0, UTIME_OMIT}};
    res("futimens", futimens(fd, ts)), U("setattr");
    fstat(fd, &st), U("getattr");
    printf("futimens times: %ld.%09ld %ld.%09ld\n", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timeval badtv[2] = {{0, 2000000}, {0, 0}};
    res("futimes bad usec", futimes(fd, badtv));
    res("fchmod", fchmod(fd, 0604)), U("setattr");
    res("fchown", fchown(fd, 21, 22)), U("setattr");
    st_line("after fchmod fchown", fstat(fd, &st), &st), U("getattr");
    res("fchown back", fchown(fd, 0, 0)), U("setattr");

    /* The stat family of older binaries, on a descriptor. */
    st_line("__fxstat", __fxstat(STAT_VER, fd, &st), &st), U("getattr");
    st64_line("__fxstat64", __fxstat64(STAT_VER, fd, &st64), &st64), U("getattr");
    st_line("__fxstat version 0", __fxstat(0, fd, &st), &st), U("getattr");
    res("__fxstat version 3", __fxstat(3, fd, &st));

    /* Extended attributes of the open file. */
    res("fsetxattr", fsetxattr(fd, "user.k", "v1", 2, 0)), U("setxattr");
    res("fsetxattr create existing", fsetxattr(fd, "user.k", "v2", 2, XATTR_CREATE)), U("setxattr");
    res("fsetxattr replace", fsetxattr(fd, "user.k", "v22", 3, XATTR_REPLACE)), U("setxattr");
    memset(buf, 0, sizeof buf);
    n = fgetxattr(fd, "user.k", buf, sizeof buf), U("getxattr");
    bytes("fgetxattr", buf, n);
    res("fgetxattr size", fgetxattr(fd, "user.k", NULL, 0)), U("getxattr");
    res("fgetxattr small", fgetxattr(fd, "user.k", buf, 1)), U("getxattr");
    n = flistxattr(fd, buf, sizeof buf), U("listxattr");
    bytes("flistxattr", buf, n);
    res("fremovexattr", fremovexattr(fd, "user.k")), U("removexattr");
    res("fgetxattr removed", fgetxattr(fd, "user.k", buf, sizeof buf)), U("getxattr");
    res("fremovexattr missing", fremovexattr(fd, "user.k")), U("removexattr");

    /* Statistics of the file's filesystem: only that they answer. */
    struct statfs sfs;
    struct statvfs svfs;
    res("fstatfs", fstatfs(fd, &sfs)), U("statfs");
    res("fstatvfs", fstatvfs(fd, &svfs)), U("statfs");
    res("fstatvfs namemax", svfs.f_namemax);
    struct statfs64 sfs64;
    struct statvfs64 svfs64;
    res("fstatfs64", fstatfs64(fd, &sfs64)), U("statfs");
    res("fstatvfs64", fstatvfs64(fd, &svfs64)), U("statfs");
    show("a.txt");

    OURS("after every data call", fd);
    res("close", close(fd)), U("release");
    res("close again", close(fd));
    res("read closed", read(fd, buf, 1));
    res("read bad fd", read(-1, buf, 1));
    res("write bad fd", write(-1, buf, 1));
}

/* ---- opening, by every spelling -------------------------------------------------------- */

static void open_calls(int dfd) {
    char buf[64];
    struct stat st;
    long n;
    int fd = open("a.txt", O_RDONLY);
    U("open_path");
    res("open", fd >= 0);
    OURS("open", fd);
    res("write read-only", write(fd, "x", 1));
    close(fd), U("release");
    res("open missing", open("missing/x", O_RDONLY)), U("open_path");
    res("open exclusive", open("a.txt", O_CREAT | O_EXCL | O_WRONLY, 0600)), U("open_path");
    res("open under a file", open("a.txt/x", O_RDONLY)), U("open_path");
    fd = open("wo.txt", O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0666), U("open_path");
    res("read write-only", read(fd, buf, 1));
    close(fd), U("release");
    st_line("umask applied", stat("wo.txt", &st), &st), U("stat_path");
    fd = open64("a.txt", O_RDONLY | O_CLOEXEC), U("open_path");
    OURS("open64", fd);
    n = read(fd, buf, 5), U("read");
    bytes("open64", buf, n);
    close(fd), U("release");
    int flags = O_RDONLY;
    fd = __open_2("a.txt", flags), U("open_path");
    OURS("__open_2", fd);
    n = read(fd, buf, 5), U("read");
    bytes("__open_2", buf, n);
    close(fd), U("release");
    fd = __open64_2("a.txt", flags), U("open_path");
    OURS("__open64_2", fd);
    n = read(fd, buf, 5), U("read");
    bytes("__open64_2", buf, n);
    close(fd), U("release");
    res("__open_2 missing", __open_2("missing", flags)), U("open_path");
    fd = openat(dfd, "a.txt", O_RDONLY), U("open_path");
    OURS("openat", fd);
    n = pread(fd, buf, 5, 1), U("read");
    bytes("openat", buf, n);
    close(fd), U("release");
    fd = openat64(AT_FDCWD, "a.txt", O_RDONLY), U("open_path");
    OURS("openat64", fd);
    n = pread(fd, buf, 5, 2), U("read");
    bytes("openat64", buf, n);
    close(fd), U("release");
    fd = __openat_2(dfd, "a.txt", flags), U("open_path");
    OURS("__openat_2", fd);
    n = pread(fd, buf, 5, 3), U("read");
    bytes("__openat_2", buf, n);
    close(fd), U("release");
    fd = __openat64_2(dfd, "a.txt", flags), U("open_path");
    OURS("__openat64_2", fd);
    n = pread(fd, buf, 5, 4), U("read");
    bytes("__openat64_2", buf, n);
    close(fd), U("release");
    fd = creat("c.txt", 0666), U("open_path");
    OURS("creat", fd);
    res("creat write", write(fd, "created\n", 8)), U("write");
    close(fd), U("release");
    fd = creat64("c64.txt", 0600), U("open_path");
    OURS("creat64", fd);
    res("creat64 write", write(fd, "c64\n", 4)), U("write");
    close(fd), U("release");
    st_line("creat", stat("c.txt", &st), &st), U("stat_path");
    st_line("creat64", stat("c64.txt", &st), &st), U("stat_path");
    fd = open("c.txt", O_WRONLY | O_TRUNC), U("open_path");
    close(fd), U("release");
    st_line("O_TRUNC", stat("c.txt", &st), &st), U("stat_path");
    fd = creat("c.txt", 0), U("open_path");
    res("creat existing", write(fd, "again\n", 6)), U("write");
    close(fd), U("release");
    st_line("creat existing", stat("c.txt", &st), &st), U("stat_path");

    /* stdio streams. */
    FILE *f = fopen("s.txt", "w+");
    U("open_path");
    res("fopen", f != NULL);
    res("fileno", fileno(f) > 2);
    OURS("fopen", fileno(f));
    res("fprintf", fprintf(f, "line %d\nline %d\n", 1, 2));
    res("fflush", fflush(f)), U("write");
    rewind(f);
    res("fgets", fgets(buf, sizeof buf, f) != NULL), U("read");
    bytes("fgets line", buf, strlen(buf));
    res("fseek", fseek(f, 0, SEEK_END));
    res("ftell", ftell(f));
    res("fclose", fclose(f)), U("release");
    f = fopen64("s.txt", "r");
    U("open_path");
    OURS("fopen64", fileno(f));
    n = fread(buf, 1, sizeof buf, f), U("read");
    bytes("fopen64 fread", buf, n);
    fclose(f), U("release");
    res("fopen missing", fopen("missing/s", "r") != NULL), U("open_path");
    fd = open("s.txt", O_RDONLY), U("open_path");
    f = fdopen(fd, "r");
    res("fdopen", f != NULL);
    OURS("fdopen", fileno(f));
    res("fdopen fgets", fgets(buf, sizeof buf, f) != NULL), U("read");
    bytes("fdopen line", buf, strlen(buf));
    fclose(f), U("release");
}

/* ---- stat by path ------------------------------------------------------------------------- */

static void stat_calls(int dfd) {
    struct stat st;
    struct stat64 st64;
    struct statx stx;
    st_line("stat", stat("a.txt", &st), &st), U("stat_path");
    st_line("stat missing", stat("missing", &st), &st), U("stat_path");
    st64_line("stat64", stat64("a.txt", &st64), &st64), U("stat_path");
    st_line("lstat", lstat("sym", &st), &st), U("stat_path");
    st64_line("lstat64", lstat64("sym", &st64), &st64), U("stat_path");
    st_line("stat through link", stat("sym", &st), &st), U("stat_path");
    st_line("fstatat", fstatat(dfd, "a.txt", &st, 0), &st), U("stat_path");
    st_line("fstatat nofollow", fstatat(dfd, "sym", &st, AT_SYMLINK_NOFOLLOW), &st), U("stat_path");
    st64_line("fstatat64", fstatat64(AT_FDCWD, "a.txt", &st64, 0), &st64), U("stat_path");
    st_line("fstatat dir", fstatat(dfd, "d", &st, 0), &st), U("stat_path");
    res("fstatat bad flags", fstatat(dfd, "a.txt", &st, 0x40000));
    statx_line("statx", statx(AT_FDCWD, "a.txt", 0, STATX_BASIC_STATS, &stx), &stx), U("stat_path");
    statx_line("statx nofollow", statx(dfd, "sym", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx), &stx), U("stat_path");
    statx_line("statx follow", statx(dfd, "sym", 0, STATX_BASIC_STATS | STATX_BTIME, &stx), &stx), U("stat_path");
    int fd = open("a.txt", O_RDONLY);
    U("open_path");
    statx_line("statx empty path", statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx), &stx), U("getattr");
    st_line("fstatat empty path", fstatat(fd, "", &st, AT_EMPTY_PATH), &st), U("getattr");
    res("statx missing", statx(AT_FDCWD, "missing", 0, STATX_BASIC_STATS, &stx)), U("stat_path");

    /* The __xstat family by name, as binaries built against glibc < 2.33 call it. */
    st_line("__xstat", __xstat(STAT_VER, "a.txt", &st), &st), U("stat_path");
    st64_line("__xstat64", __xstat64(STAT_VER, "a.txt", &st64), &st64), U("stat_path");
    st_line("__lxstat", __lxstat(STAT_VER, "sym", &st), &st), U("stat_path");
    st64_line("__lxstat64", __lxstat64(STAT_VER, "sym", &st64), &st64), U("stat_path");
    st_line("__fxstatat", __fxstatat(STAT_VER, dfd, "a.txt", &st, 0), &st), U("stat_path");
    st64_line("__fxstatat64", __fxstatat64(STAT_VER, AT_FDCWD, "sym", &st64, AT_SYMLINK_NOFOLLOW), &st64), U("stat_path");
    st_line("__xstat missing", __xstat(STAT_VER, "missing", &st), &st), U("stat_path");
    /* Other versions are libc's to answer (0 is the kernel's layout, the same on x86-64). */
    st_line("__xstat version 0", __xstat(0, "a.txt", &st), &st), U("stat_path");
    st64_line("__lxstat64 version 0", __lxstat64(0, "sym", &st64), &st64), U("stat_path");
    res("__xstat version 3", __xstat(3, "a.txt", &st));
    res("__lxstat version 3", __lxstat(3, "a.txt", &st));
    res("__fxstatat version 3", __fxstatat(3, dfd, "a.txt", &st, 0));
    close(fd), U("release");
}

/* ---- names ----------------------------------------------------------------------------- */

static void name_calls(int dfd) {
    char buf[256];
    struct stat st;
    long n;
    res("mkdir", mkdir("d", 0777)), U("mkdir");
    res("mkdirat", mkdirat(dfd, "d2", 0700)), U("mkdir");
    res("mkdir exists", mkdir("d", 0777)), U("mkdir");
    res("mkdir no parent", mkdir("nope/d", 0777)), U("mkdir");
    st_line("mkdir mode", stat("d", &st), &st), U("stat_path");
    res("symlink", symlink("a.txt", "sym")), U("symlink");
    res("symlinkat", symlinkat("d", dfd, "dlink")), U("symlink");
    res("symlink exists", symlink("x", "sym")), U("symlink");
    n = readlink("sym", buf, sizeof buf), U("readlink");
    bytes("readlink", buf, n);
    n = readlinkat(dfd, "dlink", buf, sizeof buf), U("readlink");
    bytes("readlinkat", buf, n);
    n = readlink("sym", buf, 2), U("readlink");
    bytes("readlink short", buf, n);
    res("readlink file", readlink("a.txt", buf, sizeof buf)), U("readlink");
    res("readlink missing", readlink("missing", buf, sizeof buf)), U("readlink");
    res("link", link("a.txt", "hard")), U("link");
    res("linkat", linkat(dfd, "a.txt", dfd, "hard2", 0)), U("link");
    res("link exists", link("a.txt", "sym")), U("link");
    res("link dir", link("d", "d3")), U("link");
    st_line("links", stat("a.txt", &st), &st), U("stat_path");
    res("rename", rename("hard2", "d/moved")), U("rename");
    res("renameat", renameat(dfd, "d/moved", dfd, "moved")), U("rename");
    res("renameat2 noreplace", renameat2(AT_FDCWD, "moved", AT_FDCWD, "c.txt", RENAME_NOREPLACE)), U("rename");
    res("renameat2 exchange", renameat2(dfd, "moved", dfd, "c.txt", RENAME_EXCHANGE)), U("rename");
    st_line("exchanged c.txt", stat("c.txt", &st), &st), U("stat_path");
    st_line("exchanged moved", stat("moved", &st), &st), U("stat_path");
    res("renameat2 exchange back", renameat2(AT_FDCWD, "moved", AT_FDCWD, "c.txt", RENAME_EXCHANGE)), U("rename");
    res("renameat2 noreplace free", renameat2(AT_FDCWD, "c64.txt", AT_FDCWD, "moved2", RENAME_NOREPLACE)), U("rename");
    res("renameat2 exchange missing", renameat2(AT_FDCWD, "c64.txt", AT_FDCWD, "moved2", RENAME_EXCHANGE)), U("rename");
    res("rename missing", rename("missing", "x")), U("rename");
    res("rename dir into itself", rename("d", "d/sub")), U("rename");
    res("access", access("a.txt", R_OK | W_OK)), U("access");
    res("access missing", access("missing", F_OK)), U("access");
    res("access exec", access("a.txt", X_OK)), U("access");
    res("faccessat", faccessat(dfd, "d", X_OK, 0)), U("access");
    res("faccessat eaccess", faccessat(dfd, "a.txt", R_OK, AT_EACCESS)), U("access");
    res("chmod", chmod("c.txt", 0600)), U("setattr_path");
    res("fchmodat", fchmodat(dfd, "moved2", 0640, 0)), U("setattr_path");
    res("chmod missing", chmod("missing", 0600)), U("setattr_path");
    res("chown", chown("c.txt", 7, 8)), U("setattr_path");
    res("lchown", lchown("sym", 9, 10)), U("setattr_path");
    res("fchownat", fchownat(dfd, "moved2", -1, 11, 0)), U("setattr_path");
    st_line("chmod chown", stat("c.txt", &st), &st), U("stat_path");
    st_line("lchown", lstat("sym", &st), &st), U("stat_path");
    st_line("fchmodat fchownat", stat("moved2", &st), &st), U("stat_path");
    struct timeval tv[2] = {{1000, 0}, {2000, 500000}};
    res("utimes", utimes("c.txt", tv)), U("setattr_path");
    stat("c.txt", &st), U("stat_path");
    printf("utimes times: %ld %ld.%09ld\n", (long)st.st_atime, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timeval ltv[2] = {{3000, 0}, {4000, 0}};
    res("lutimes", lutimes("sym", ltv)), U("setattr_path");
    lstat("sym", &st), U("stat_path");
    printf("lutimes times: %ld %ld\n", (long)st.st_atime, (long)st.st_mtime);
    stat("sym", &st), U("stat_path");
    printf("lutimes left the target: %d\n", st.st_mtime != 4000);
    struct utimbuf ub = {5000, 6000};
    res("utime", utime("c.txt", &ub)), U("setattr_path");
    stat("c.txt", &st), U("stat_path");
    printf("utime times: %ld %ld\n", (long)st.st_atime, (long)st.st_mtime);
    struct timespec ts[2] = {{7000, 1}, {8000, 2}};
    res("utimensat", utimensat(dfd, "c.txt", ts, 0)), U("setattr_path");
    stat("c.txt", &st), U("stat_path");
    printf("utimensat times: %ld.%ld %ld.%ld\n", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    struct timeval badtv[2] = {{0, -1}, {0, 0}};
    res("utimes bad usec", utimes("c.txt", badtv));
    res("utimes missing", utimes("missing", tv)), U("setattr_path");
    res("truncate", truncate("c.txt", 3)), U("setattr_path");
    res("truncate64", truncate64("moved2", 2)), U("setattr_path");
    res("truncate dir", truncate("d", 0)), U("setattr_path");
    res("truncate negative", truncate("c.txt", -1));
    show("c.txt");
    show("moved2");

    /* Extended attributes by path. */
    res("setxattr", setxattr("a.txt", "user.p", "1", 1, 0)), U("setxattr");
    /* Through a final symbolic link: the kernel follows it. */
    res("setxattr through link", setxattr("sym", "user.q", "22", 2, 0)), U("stat_path"), M("setxattr"), M("readlink");
    res("lsetxattr", lsetxattr("a.txt", "user.r", "333", 3, XATTR_CREATE)), U("setxattr");
    n = getxattr("sym", "user.q", buf, sizeof buf), U("stat_path"), M("readlink");
    bytes("getxattr", buf, n);
    n = lgetxattr("a.txt", "user.r", buf, sizeof buf), U("getxattr");
    bytes("lgetxattr", buf, n);
    res("lgetxattr on the link itself", lgetxattr("sym", "user.q", buf, sizeof buf));
    res("getxattr missing file", getxattr("missing", "user.q", buf, sizeof buf)), U("stat_path");
    n = listxattr("a.txt", buf, sizeof buf), U("listxattr");
    /* Names in the order the filesystem keeps them: print them sorted. */
    {
        char *names[8];
        int k = 0;
        for (char *p = buf; p < buf + n && k < 8; p += strlen(p) + 1) names[k++] = p;
        for (int i = 0; i < k; i++)
            for (int j = i + 1; j < k; j++)
                if (strcmp(names[i], names[j]) > 0) { char *t = names[i]; names[i] = names[j]; names[j] = t; }
        printf("listxattr: %ld", n);
        for (int i = 0; i < k; i++) printf(" %s", names[i]);
        printf("\n");
    }
    res("llistxattr size", llistxattr("a.txt", NULL, 0)), U("listxattr");
    res("removexattr through link", removexattr("sym", "user.q")), U("stat_path"), M("removexattr"), M("readlink");
    res("lremovexattr", lremovexattr("a.txt", "user.r")), U("removexattr");
    res("removexattr missing", removexattr("a.txt", "user.none")), U("removexattr");

    /* realpath and its spellings, relative to the working directory's own. */
    char out[PATH_MAX];
    char *r = realpath("sym", NULL);
    U("readlink");
    real_line("realpath", r), free(r);
    r = realpath("dlink/../a.txt", out), U("stat_path");
    real_line("realpath dotdot", r);
    r = __realpath_chk("./sym", out, sizeof out), U("readlink");
    real_line("__realpath_chk", r);
    r = canonicalize_file_name("d//./"), U("stat_path");
    real_line("canonicalize_file_name", r), free(r);
    real_line("realpath missing", realpath("missing/x", out));
    real_line("realpath through a file", realpath("a.txt/x", out));

    /* A final "." names the directory itself, which the namespace calls refuse. */
    res("stat file/.", stat("a.txt/.", &st));
    res("unlink file/.", unlink("a.txt/."));
    res("rmdir dir/.", rmdir("d2/."));
    res("mkdir dir/.", mkdir("d/.", 0777));
    res("rename dir/.", rename("d2/.", "d4"));
    res("rename to dir/.", rename("moved2", "d2/."));
    res("link to dir/.", link("moved2", "d2/."));
    res("symlink at dir/.", symlink("x", "d2/."));
    res("chmod dir/.", chmod("d2/.", 0700)), M("setattr");
    res("open file/.", open("a.txt/.", O_RDONLY));
    res("unlink", unlink("hard")), U("unlink_path");
    res("unlinkat", unlinkat(dfd, "moved", 0)), U("unlink_path");
    res("unlink missing", unlink("missing")), U("unlink_path");
    res("unlink dir", unlink("d")), U("unlink_path");
    res("unlinkat removedir", unlinkat(dfd, "d2", AT_REMOVEDIR)), U("rmdir");
    res("rmdir .", rmdir("."));
    res("rmdir missing", rmdir("missing")), U("rmdir");
    res("rmdir file", rmdir("moved2")), U("rmdir");
}

/* ---- directories and statistics ----------------------------------------------------------- */

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
static int no_dots(const struct dirent *e) { return e->d_name[0] != '.'; }

static void dir_calls(int dfd) {
    DIR *d = opendir(".");
    U("readdir");
    res("opendir", d != NULL);
    int n = 0;
    while (readdir(d)) n++;
    res("readdir entries", n);
    long pos = telldir(d);
    rewinddir(d);
    n = 0;
    struct dirent64 *e64;
    while ((e64 = readdir64(d))) n++;
    res("readdir64 after rewinddir", n);
    seekdir(d, pos);
    res("readdir after seekdir to the end", readdir(d) != NULL);
    res("dirfd", dirfd(d) >= 0);
    rewinddir(d);
    struct dirent ent, *got;
    struct dirent64 ent64, *got64;
    n = 0;
    while (readdir_r(d, &ent, &got) == 0 && got) n++;
    res("readdir_r entries", n);
    rewinddir(d);
    n = 0;
    while (readdir64_r(d, &ent64, &got64) == 0 && got64) n++;
    res("readdir64_r entries", n);
    res("closedir", closedir(d));
    struct dirent **list;
    n = scandir(".", &list, no_dots, by_name), U("readdir");
    printf("scandir: %d", n);
    for (int i = 0; i < n; i++) printf(" %s", list[i]->d_name), free(list[i]);
    printf("\n");
    free(list);
    n = scandirat(dfd, "d", &list, NULL, by_name), U("readdir");
    printf("scandirat:");
    for (int i = 0; i < n; i++) printf(" %s", list[i]->d_name), free(list[i]);
    printf("\n");
    free(list);
    res("scandir missing", scandir("missing", &list, NULL, by_name));
    struct dirent64 **list64;
    n = scandir64(".", &list64, NULL, NULL), U("readdir");
    res("scandir64 entries", n);
    for (int i = 0; i < n; i++) free(list64[i]);
    free(list64);
    n = scandirat64(dfd, "d", &list64, NULL, NULL), U("readdir");
    res("scandirat64 entries", n);
    for (int i = 0; i < n; i++) free(list64[i]);
    free(list64);
    int fd = open("d", O_RDONLY | O_DIRECTORY);
    d = fdopendir(fd);
    n = 0;
    while (readdir(d)) n++;
    res("fdopendir entries", n), U("readdir");
    closedir(d);
    fd = open(".", O_RDONLY | O_DIRECTORY);
    char buf[4096];
    long m, total = 0;
    while ((m = getdents64(fd, buf, sizeof buf)) > 0)
        for (long off = 0; off < m; off += ((struct dirent64 *)(buf + off))->d_reclen) total++;
    res("getdents64 entries", total), U("readdir");
    /* A directory's fsync (SQLite's and dpkg's durability idiom) is the service's. */
    res("fsync directory", fsync(fd)), U("fsyncdir");
    res("fdatasync directory", fdatasync(fd)), U("fsyncdir");
    close(fd);

    struct statfs sfs;
    struct statvfs svfs;
    res("statfs", statfs(".", &sfs)), U("statfs");
    struct statfs64 sfs64;
    struct statvfs64 svfs64;
    res("statfs64", statfs64("a.txt", &sfs64)), U("statfs");
    res("statvfs", statvfs("a.txt", &svfs)), U("statfs");
    res("statvfs64", statvfs64(".", &svfs64)), U("statfs");
    res("statfs missing", statfs("missing", &sfs));

    /* The working directory moves: relative paths follow it. */
    res("chdir", chdir("d"));
    int fd2 = open("in-d.txt", O_CREAT | O_WRONLY, 0644);
    U("open_path");
    res("open in new cwd", fd2 >= 0);
    close(fd2), U("release");
    res("fchdir", fchdir(dfd));
    struct stat st;
    st_line("created in d", stat("d/in-d.txt", &st), &st), U("stat_path");
    unlink("d/in-d.txt"), U("unlink_path");
}

/* ---- copies inside the kernel, emulated ---------------------------------------------- */

static int fresh(const char *path, const char *content);

static void copy_calls(void) {
    char pattern[20000], buf[256];
    for (int i = 0; i < (int)sizeof pattern; i++) pattern[i] = 'a' + i % 23;
    int src = create("src.bin", O_RDWR | O_CLOEXEC);
    res("write source", write(src, pattern, sizeof pattern)), U("write");
    int dst = create("dst.bin", O_RDWR | O_CLOEXEC);
    struct stat st;
    loff_t oin = 10, oout = 0;
    res("copy_file_range", copy_file_range(src, &oin, dst, NULL, 5000, 0)), U("read"), U("write");
    printf("copy_file_range offsets: in %lld source %ld dest %ld\n", (long long)oin, (long)lseek(src, 0, SEEK_CUR), (long)lseek(dst, 0, SEEK_CUR));
    res("copy_file_range at the end", copy_file_range(src, NULL, dst, &oout, 100, 0)), U("read");
    lseek(src, 19990, SEEK_SET);
    oout = 6000;
    res("copy_file_range short", copy_file_range(src, NULL, dst, &oout, 100, 0)), U("read"), U("write");
    printf("copy_file_range offsets: out %lld source %ld\n", (long long)oout, (long)lseek(src, 0, SEEK_CUR));
    res("copy_file_range flags", copy_file_range(src, NULL, dst, NULL, 10, 1));
    res("copy_file_range between ours with a bad offset", copy_file_range(src, (loff_t *)8, dst, NULL, 10, 0));
    res("copy_file_range none", copy_file_range(src, NULL, dst, NULL, 0, 0));
    off_t so = 100;
    res("sendfile", sendfile(dst, src, &so, 50)), U("read"), U("write");
    printf("sendfile offsets: in %ld dest %ld\n", (long)so, (long)lseek(dst, 0, SEEK_CUR));
    so = -1;
    res("sendfile negative offset", sendfile(dst, src, &so, 5));
    off64_t so64 = 0;
    res("sendfile64", sendfile64(dst, src, &so64, 7)), U("read"), U("write");
    int p[2];
    if (pipe2(p, O_NONBLOCK)) perror("pipe");
    so = 3;
    res("sendfile to a pipe", sendfile(p[1], src, &so, 12)), U("read");
    long n = read(p[0], buf, sizeof buf);
    bytes("from the pipe", buf, n);
    lseek(src, 0, SEEK_SET);
    res("sendfile from the offset", sendfile(p[1], src, NULL, 5)), U("read");
    n = read(p[0], buf, sizeof buf);
    bytes("from the pipe again", buf, n);
    res("source offset after sendfile", lseek(src, 0, SEEK_CUR));
    st_line("copied", fstat(dst, &st), &st), U("getattr");
    n = pread(dst, buf, 20, 4995), U("read");
    bytes("copied bytes", buf, n);
    OURS("copy_file_range/sendfile source", src);
    OURS("copy_file_range/sendfile destination", dst);
    close(p[0]);
    close(p[1]);
    close(src), U("release");
    close(dst), U("release");

    /* A copy between one of our files and a file of the kernel's on another filesystem
     * (`cat f > out` and `cp` try one first): the kernel refuses it before copying (a pipe or
     * a device: EINVAL; another filesystem: EXDEV), and the library says so itself, its file
     * kept. */
    if (pipe2(p, O_NONBLOCK)) perror("pipe");
    int f1 = fresh("r1.txt", "0123456789");
    res("copy_file_range to a pipe", copy_file_range(f1, NULL, p[1], NULL, 4, 0));
    res("copy_file_range to a pipe left", read(p[0], buf, sizeof buf));
    res("source offset", lseek(f1, 0, SEEK_CUR));
    char shm[64];
    snprintf(shm, sizeof shm, "/dev/shm/ptn-entry-%d", (int)getpid());
    int other = open(shm, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    res("copy_file_range to another filesystem", copy_file_range(f1, NULL, other, NULL, 4, 0));
    res("copy_file_range from another filesystem", copy_file_range(other, NULL, f1, NULL, 4, 0));
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    res("copy_file_range to a device", copy_file_range(f1, NULL, null, NULL, 4, 0));
    int other_ro = open(shm, O_RDONLY | O_CLOEXEC);
    res("copy_file_range to another filesystem's read-only file", copy_file_range(f1, NULL, other_ro, NULL, 4, 0));
    int opath = open(shm, O_PATH | O_CLOEXEC);
    res("copy_file_range to an O_PATH descriptor", copy_file_range(f1, NULL, opath, NULL, 4, 0));
    /* Access mode 3 (O_RDWR|O_WRONLY): neither readable nor writable. */
    int mode3 = open(shm, O_RDWR | O_WRONLY | O_CLOEXEC);
    res("copy_file_range to a mode-3 file", copy_file_range(f1, NULL, mode3, NULL, 4, 0));
    /* An offset pointer that cannot be read: EFAULT, before the files are looked at. */
    res("copy_file_range with a bad offset", copy_file_range(f1, (loff_t *)8, other, NULL, 4, 0));
    res("copy_file_range with a bad offset to a pipe", copy_file_range(f1, NULL, p[1], (loff_t *)8, 4, 0));
    res("sendfile with a bad offset", sendfile(other, f1, (off_t *)8, 4));
    close(null), close(other), close(other_ro), close(opath), close(mode3);
    unlink(shm);
    res("source offset", lseek(f1, 0, SEEK_CUR));
    OURS("copy_file_range refused across filesystems", f1);
    close(f1);
    /* A file of ours opened with access mode 3 is neither readable nor writable. */
    int m3 = open("r1.txt", O_RDWR | O_WRONLY | O_CLOEXEC);
    res("read of a mode-3 file", read(m3, buf, 4));
    res("write to a mode-3 file", write(m3, "xy", 2));
    res("ftruncate of a mode-3 file", ftruncate(m3, 1));
    close(m3);
    show("r1.txt");

    /* What the kernel refuses, or does only itself (appending or read-only destinations,
     * write-only sources, negative offsets, ranges of one file): the library leaves it to
     * the kernel, with its files (fresh ones here) handed over. */
    int f2 = fresh("r2.txt", "0123456789");
    put(p[1], "pipe");
    res("sendfile from a pipe", sendfile(f2, p[0], NULL, 4)), K("open");
    res("sendfile from a pipe left", read(p[0], buf, sizeof buf));
    KERNELS("sendfile from a pipe", f2);
    close(f2);
    show("r2.txt");
    int f3 = fresh("r3.txt", "0123456789"), app = create("r3-append.txt", O_WRONLY | O_APPEND);
    so = 0;
    res("sendfile to an appending file", sendfile(app, f3, &so, 4)), K("open"), K("open");
    close(f3), close(app);
    f3 = fresh("r3.txt", "0123456789"), app = create("r3-append.txt", O_WRONLY | O_APPEND);
    oin = 0;
    res("copy_file_range to an appending file", copy_file_range(f3, &oin, app, NULL, 4, 0)), K("open"), K("open");
    close(f3), close(app);
    show("r3-append.txt");
    int f4 = fresh("r4.txt", "0123456789"), rd = open("r3.txt", O_RDONLY);
    U("open_path");
    res("copy_file_range to a read-only file", copy_file_range(f4, NULL, rd, NULL, 4, 0)), K("open"), K("open");
    res("source offset", lseek(f4, 0, SEEK_CUR));
    close(f4), close(rd);
    int f5 = fresh("r5.txt", "0123456789"), wr = create("r5-wo.txt", O_WRONLY);
    res("copy_file_range from a write-only file", copy_file_range(wr, NULL, f5, NULL, 4, 0)), K("open"), K("open");
    close(f5), close(wr);
    int f6 = fresh("r6.txt", "0123456789"), f7 = fresh("r7.txt", "abcdefghij");
    oin = -5;
    res("copy_file_range negative offset", copy_file_range(f6, &oin, f7, NULL, 4, 0)), K("open"), K("open");
    close(f6), close(f7);
    int f8 = fresh("r8.txt", "0123456789");
    oin = 0, oout = 2;
    res("copy_file_range overlapping", copy_file_range(f8, &oin, f8, &oout, 4, 0)), K("open");
    KERNELS("copy_file_range overlapping", f8);
    close(f8);
    int f9 = fresh("r9.txt", "0123456789"), f9b = open("r9.txt", O_RDWR);
    U("open_path");
    oin = 0, oout = 6;
    res("copy_file_range within one file", copy_file_range(f9, &oin, f9b, &oout, 4, 0)), K("open"), K("open");
    close(f9), close(f9b);
    show("r9.txt");
    int f10 = fresh("r10.txt", "0123456789"), dir = open(".", O_RDONLY | O_DIRECTORY);
    res("copy_file_range to a directory", copy_file_range(f10, NULL, dir, NULL, 4, 0));
    OURS("copy_file_range to a directory", f10);
    close(f10);
    int f11 = fresh("r11.txt", "0123456789");
    res("sendfile to a directory", sendfile(dir, f11, NULL, 4)), K("open");
    close(f11), close(dir);
    close(p[0]);
    close(p[1]);
}

/* ---- calls only the kernel serves: each hands a fresh file of ours over --------------- */

static int fresh(const char *path, const char *content) {
    int fd = create(path, O_RDWR | O_CLOEXEC);
    put(fd, content), U("write");
    return fd;
}

static void kernel_calls(void) {
    char buf[256];
    struct stat st;
    long n;
    int p[2], q[2];
    if (pipe(p) || pipe(q)) perror("pipe");

    /* fallocate, posix_fallocate, syncfs and fpathconf are served without a hand-over. */
    int fd = fresh("fa.bin", "0123456789");
    res("fallocate", fallocate(fd, 0, 0, 8192)), U("fallocate");
    OURS("fallocate", fd);
    st_line("fallocate size", fstat(fd, &st), &st), U("getattr");
    res("fallocate keep size", fallocate(fd, FALLOC_FL_KEEP_SIZE, 8192, 4096)), U("fallocate");
    st_line("keep size", fstat(fd, &st), &st), U("getattr");
    res("fallocate punch hole", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2, 4)), U("fallocate");
    n = pread(fd, buf, 10, 0), U("read");
    bytes("after the hole", buf, n);
    res("fallocate zero range", fallocate(fd, FALLOC_FL_ZERO_RANGE, 6, 2)), U("fallocate");
    n = pread(fd, buf, 10, 0), U("read");
    bytes("after the zeroed range", buf, n);
    res("fallocate64", fallocate64(fd, 0, 8192, 100)), U("fallocate");
    res("fallocate bad", fallocate(fd, 0, -1, 10));
    res("fallocate empty", fallocate(fd, 0, 0, 0));
    res("fallocate bad mode", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10));
    OURS("fallocate after errors", fd);
    close(fd);
    st_line("fallocate on the path", stat("fa.bin", &st), &st), U("stat_path");

    fd = fresh("pf.bin", "abc");
    res_num("posix_fallocate", posix_fallocate(fd, 0, 5000)), U("fallocate");
    OURS("posix_fallocate", fd);
    res_num("posix_fallocate64", posix_fallocate64(fd, 100, 6000)), U("fallocate");
    res_num("posix_fallocate bad", posix_fallocate(fd, -1, 10));
    st_line("posix_fallocate size", fstat(fd, &st), &st), U("getattr");
    close(fd);
    int ro = open("pf.bin", O_RDONLY | O_CLOEXEC);
    U("open_path");
    res_num("posix_fallocate read-only", posix_fallocate(ro, 0, 10)), U("fallocate");
    res("fallocate read-only", fallocate(ro, 0, 0, 10)), U("fallocate");
    OURS("fallocate read-only", ro);
    close(ro);

    /* splice with one end ours and the other a pipe: reads and writes at user level. */
    fd = fresh("splice.txt", "spliced text");
    loff_t off = 2;
    res("splice file to pipe", splice(fd, &off, p[1], NULL, 6, 0)), U("read");
    res("splice file offset", off);
    OURS("splice from a file", fd);
    n = read(p[0], buf, sizeof buf);
    bytes("spliced", buf, n);
    lseek(fd, 1, SEEK_SET);
    res("splice at the file's offset", splice(fd, NULL, p[1], NULL, 4, SPLICE_F_MOVE)), U("read");
    res("file offset after", lseek(fd, 0, SEEK_CUR));
    n = read(p[0], buf, sizeof buf);
    bytes("spliced at the offset", buf, n);
    res("splice past the end", splice(fd, &off, p[1], NULL, 100, 0)), U("read");
    n = read(p[0], buf, sizeof buf);
    bytes("spliced to the end", buf, n);
    int out = fresh("spliced-out.txt", "0123456789");
    put(p[1], "PIPED");
    off = 3;
    res("splice pipe to file", splice(p[0], NULL, out, &off, 5, 0)), U("write");
    res("splice offset", off);
    OURS("splice to a file", out);
    put(p[1], "more");
    res("splice pipe to the file's offset", splice(p[0], NULL, out, NULL, 100, 0)), U("write");
    res("out offset after", lseek(out, 0, SEEK_CUR));
    res("splice between two files", splice(fd, NULL, out, NULL, 4, 0));
    res("splice with a pipe offset", splice(fd, NULL, p[1], &off, 4, 0));
    close(out);
    show("spliced-out.txt");
    /* More than the pipe holds: only what fits moves, as with the kernel (no blocking on a
     * pipe nobody drains meanwhile). */
    int big = create("splice-big.bin", O_RDWR | O_CLOEXEC), pp[2];
    static char blob[100000];
    memset(blob, 'b', sizeof blob);
    res("big write", write(big, blob, sizeof blob)), U("write");
    if (pipe(pp)) perror("pipe");
    off = 0;
    res("splice more than the pipe holds", splice(big, &off, pp[1], NULL, 1 << 20, 0)), U("read");
    long drained = 0;
    while ((n = read(pp[0], blob, sizeof blob)) > 0) {
        drained += n;
        if (drained >= off) break;
    }
    res("drained", drained);
    close(pp[0]), close(pp[1]), close(big);
    put(p[1], "tee-data");
    res("tee", tee(p[0], q[1], 8, 0));
    n = read(q[0], buf, sizeof buf);
    bytes("teed", buf, n);
    n = read(p[0], buf, sizeof buf);
    bytes("still in the pipe", buf, n);
    close(fd);
    fd = fresh("tee.txt", "t");
    /* tee takes pipes only: EINVAL for a file, without handing it over. */
    res("tee from a file", tee(fd, q[1], 1, 0));
    OURS("tee", fd);
    close(fd);

    fd = fresh("syncfs.txt", "s");
    res("syncfs", syncfs(fd)), U("syncfs");
    OURS("syncfs", fd);
    close(fd);
    /* sync: every instance of the process's mounts (one here) writes out what it holds. */
    sync();
    printf("sync: done\n");
    U("syncfs");
    fd = fresh("pathconf.txt", "p");
    res("fpathconf", fpathconf(fd, _PC_NAME_MAX));
    res("fpathconf path max", fpathconf(fd, _PC_PATH_MAX));
    res("fpathconf pipe buf", fpathconf(fd, _PC_PIPE_BUF));
    OURS("fpathconf", fd);
    close(fd);

    fd = fresh("mmap.bin", "mapped bytes");
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    K("open");
    res("mmap", m != MAP_FAILED);
    KERNELS("mmap", fd);
    if (m != MAP_FAILED) {
        bytes("mapped", m, 12);
        memcpy(m, "MAPPED", 6);
        res("msync", msync(m, 4096, MS_SYNC));
        munmap(m, 4096);
    }
    close(fd);
    show("mmap.bin");
    fd = fresh("mmap64.bin", "64");
    m = mmap64(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    K("open");
    if (m != MAP_FAILED) bytes("mmap64", m, 2), munmap(m, 4096);
    KERNELS("mmap64", fd);
    close(fd);

    /* Locks run in the kernel on the file opened once more through the FUSE mount (one FUSE
     * open), which the descriptor becomes in the kernel; its data stays the library's. */
    char one;
    fd = fresh("flock.txt", "f");
    res("flock", flock(fd, LOCK_EX | LOCK_NB)), K("open");
    res("read after flock", pread(fd, &one, 1, 0)), U("read");
    res("flock unlock", flock(fd, LOCK_UN));
    close(fd);
    fd = fresh("lockf.txt", "l");
    res("lockf", lockf(fd, F_TLOCK, 0)), K("open");
    res("read after lockf", pread(fd, &one, 1, 0)), U("read");
    res("lockf64 unlock", lockf64(fd, F_ULOCK, 0));
    close(fd);
    fd = fresh("setlk.txt", "s");
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    res("fcntl F_SETLK", fcntl(fd, F_SETLK, &fl)), K("open");
    res("read after F_SETLK", pread(fd, &one, 1, 0)), U("read");
    fl.l_type = F_UNLCK;
    res("fcntl F_SETLK unlock", fcntl(fd, F_SETLK, &fl));
    close(fd);
    fd = fresh("ioctl.txt", "0123456789");
    lseek(fd, 4, SEEK_SET);
    int avail = -1;
    res("ioctl FIONREAD", ioctl(fd, FIONREAD, &avail)), U("getattr");
    OURS("ioctl FIONREAD", fd);
    res("FIONREAD bytes", avail);
    lseek(fd, 20, SEEK_SET);
    res("ioctl FIONREAD past the end", ioctl(fd, FIONREAD, &avail)), U("getattr");
    res("FIONREAD bytes past the end", avail);
    int bsz = -1;
    res("ioctl FIGETBSZ", ioctl(fd, FIGETBSZ, &bsz));
    OURS("ioctl FIGETBSZ", fd);
    res("FIGETBSZ known", bsz > 0);
    int nb = 1;
    res("ioctl FIONBIO", ioctl(fd, FIONBIO, &nb));
    res("O_NONBLOCK after FIONBIO", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    res("ioctl FIOCLEX", ioctl(fd, FIOCLEX));
    res("FD_CLOEXEC after FIOCLEX", fcntl(fd, F_GETFD));
    OURS("ioctl FIONBIO", fd);
    /* Any other request hands the file to the kernel. */
    loff_t qsize = -1;
    res("ioctl FIOQSIZE", ioctl(fd, FIOQSIZE, &qsize)), K("open");
    KERNELS("ioctl", fd);
    close(fd);

    /* preadv2/pwritev2 with RWF_* flags: the kernel's (the file is handed over first). */
    fd = fresh("rwf.txt", "0123456789");
    struct iovec wv[1] = {{"dsync", 5}};
    res("pwritev2 RWF_DSYNC", pwritev2(fd, wv, 1, 0, RWF_DSYNC)), K("open"), M("write");
    KERNELS("pwritev2 RWF_DSYNC", fd);
    struct iovec av[1] = {{"+append", 7}};
    res("pwritev2 RWF_APPEND", pwritev2(fd, av, 1, 0, RWF_APPEND)), M("write");
    res("pwritev64v2 RWF_SYNC", pwritev64v2(fd, wv, 1, 10, RWF_SYNC)), M("write");
    res("pwritev2 bad flag", pwritev2(fd, wv, 1, 0, 0x40000000));
    close(fd);
    show("rwf.txt");
    fd = fresh("rwf-read.txt", "abcdefghij");
    char r1[4] = {0};
    struct iovec rv[1] = {{r1, 4}};
    res("preadv2 RWF_HIPRI", preadv2(fd, rv, 1, 2, RWF_HIPRI)), K("open");
    KERNELS("preadv2 RWF_HIPRI", fd);
    bytes("preadv2 RWF_HIPRI bytes", r1, 4);
    res("preadv64v2 RWF_HIPRI", preadv64v2(fd, rv, 1, 6, RWF_HIPRI));
    bytes("preadv64v2 RWF_HIPRI bytes", r1, 4);
    close(fd);

    /* A file of ours duplicated onto stdout: libc's stdio writes there with its internal
     * write, so the kernel takes the file over. */
    fflush(stdout);
    int saved = dup(1);
    fd = create("stdout.txt", O_WRONLY | O_CLOEXEC);
    if (dup2(fd, 1) != 1) perror("dup2");
    K("open");
    KERNELS("dup2 onto stdout", 1);
    KERNELS("dup2 onto stdout", fd);
    printf("this line went to stdout.txt\n");
    fflush(stdout);
    M("write");
    dup2(saved, 1);
    close(saved);
    close(fd);
    show("stdout.txt");
    close(p[0]), close(p[1]), close(q[0]), close(q[1]);
}

/* ---- processes: descriptors of ours cross fork, exec and spawn ------------------------ */

/* A file of ours the next child inherits, with the parent's first line. */
static int inheritable(const char *path) {
    int fd = create(path, O_WRONLY);
    put(fd, "parent before\n"), U("write");
    return fd;
}

/* The parent's last line (written through the kernel now), and the file. */
static void finish(const char *path, int fd) {
    put(fd, "parent after\n");
    close(fd);
    show(path);
}

static void process_calls(void) {
    char cmd[128];
    pid_t pid;
    int fd;
    fflush(stdout);

    fd = inheritable("spawn.txt");
    snprintf(cmd, sizeof cmd, "echo posix_spawn child >&%d", fd);
    char *argv[] = {"sh", "-c", cmd, NULL};
    res_num("posix_spawn", posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ)), K("open"), M("write");
    res("posix_spawn status", status_of(pid));
    KERNELS("posix_spawn", fd);
    finish("spawn.txt", fd);

    fd = inheritable("spawnp.txt");
    snprintf(cmd, sizeof cmd, "echo posix_spawnp child >&%d", fd);
    res_num("posix_spawnp", posix_spawnp(&pid, "sh", NULL, NULL, argv, environ)), K("open");
    res("posix_spawnp status", status_of(pid));
    KERNELS("posix_spawnp", fd);
    finish("spawnp.txt", fd);
    res_num("posix_spawn missing", posix_spawn(&pid, "/nonexistent", NULL, NULL, argv, environ));

    fd = inheritable("system.txt");
    snprintf(cmd, sizeof cmd, "echo system child >&%d; exit 3", fd);
    int st = system(cmd);
    K("open");
    res("system status", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    KERNELS("system", fd);
    finish("system.txt", fd);

    fd = inheritable("popen.txt");
    snprintf(cmd, sizeof cmd, "echo popen child >&%d; echo from popen", fd);
    FILE *f = popen(cmd, "r");
    K("open");
    char line[64] = "";
    res("popen", f != NULL);
    if (f && fgets(line, sizeof line, f)) bytes("popen read", line, strlen(line));
    res("pclose", f ? pclose(f) : -1);
    KERNELS("popen", fd);
    finish("popen.txt", fd);

    fd = inheritable("vfork.txt");
    snprintf(cmd, sizeof cmd, "echo vfork child >&%d", fd);
    pid = vfork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    K("open");
    res("vfork status", status_of(pid));
    KERNELS("vfork", fd);
    finish("vfork.txt", fd);

    fd = inheritable("fork.txt");
    pid = fork();
    if (pid == 0) {
        ssize_t w = write(fd, "fork child\n", 11);
        _exit(w == 11 ? 0 : 1);
    }
    K("open");
    res("fork status", status_of(pid));
    KERNELS("fork", fd);
    finish("fork.txt", fd);

    /* Each exec in a child that opened its own file of ours (the exec hands it over). */
    static const char *kinds[] = {"execv", "execvp", "execve", "execvpe", "execl", "execlp", "execle", "fexecve"};
    for (unsigned k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        char path[64];
        snprintf(path, sizeof path, "%s.txt", kinds[k]);
        U("open_path"), U("write"), K("open");
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            int cfd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
            put(cfd, "child before exec\n");
            snprintf(cmd, sizeof cmd, "echo %s ran >&%d", kinds[k], cfd);
            char *av[] = {"sh", "-c", cmd, NULL};
            switch (k) {
            case 0: execv("/bin/sh", av); break;
            case 1: execvp("sh", av); break;
            case 2: execve("/bin/sh", av, environ); break;
            case 3: execvpe("sh", av, environ); break;
            case 4: execl("/bin/sh", "sh", "-c", cmd, (char *)NULL); break;
            case 5: execlp("sh", "sh", "-c", cmd, (char *)NULL); break;
            case 6: execle("/bin/sh", "sh", "-c", cmd, (char *)NULL, environ); break;
            case 7: {
                /* fexecve of a descriptor of ours: a script written here, run from it. */
                int script = open("script.sh", O_CREAT | O_WRONLY | O_TRUNC, 0755);
                char text[160];
                snprintf(text, sizeof text, "#!/bin/sh\necho \"fexecve ran: $*\" >&%d\n", cfd);
                put(script, text);
                close(script);
                script = open("script.sh", O_RDONLY);
                char *sv[] = {"script.sh", "with", "args", NULL};
                fexecve(script, sv, environ);
                break;
            }
            }
            perror(kinds[k]);
            _exit(127);
        }
        if (k == 7) U("open_path"), U("write"), U("open_path");
        char what[64];
        snprintf(what, sizeof what, "%s status", kinds[k]);
        res(what, status_of(pid));
        show(path);
    }
    unlink("script.sh"), U("unlink_path");

    /* A close-on-exec descriptor of ours is not handed over: the child never sees it, and
     * it stays on the user-level path. */
    fd = create("cloexec.txt", O_WRONLY | O_CLOEXEC);
    snprintf(cmd, sizeof cmd, "echo leaked 2>/dev/null >&%d || echo closed in the child", fd);
    int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
    res("posix_spawn cloexec status", rc ? -1 : status_of(pid));
    OURS("posix_spawn with a close-on-exec file", fd);
    res_num("posix_spawn cloexec", rc);
    put(fd, "still ours\n"), U("write");
    close(fd), U("release");
    show("cloexec.txt");
}

/* ---- closing many at once -------------------------------------------------------------- */

static void close_calls(void) {
    char buf[16];
    int a = fresh("ca.txt", "a"), b = fresh("cb.txt", "b"), c = fresh("cc.txt", "c");
    res("dup2 200", dup2(a, 200));
    res("dup2 201", dup2(b, 201));
    res("dup2 202", dup2(c, 202));
    res("dup2 203", dup2(c, 203));
    res("close_range cloexec", close_range(200, 201, CLOSE_RANGE_CLOEXEC));
    res("cloexec set", fcntl(200, F_GETFD));
    res("write after cloexec", write(200, "A", 1)), U("write");
    OURS("close_range cloexec", 200);
    res("close_range", close_range(200, 201, 0));
    res("closed 200", fcntl(200, F_GETFD));
    res("write closed 201", write(201, "B", 1));
    res("close_range bad", close_range(10, 5, 0));
    closefrom(202);
    res("closefrom 202", fcntl(202, F_GETFD));
    res("closefrom 203", fcntl(203, F_GETFD));
    OURS("below closefrom", a);
    res("read through the original", pread(a, buf, 2, 0)), U("read");
    res("original c still open", write(c, "C", 1)), U("write");
    close(a), close(b), close(c);
    U("release"), U("release"), U("release");
    show("ca.txt");
    show("cc.txt");
    /* A file opened after closefrom gets a descriptor as before. */
    int fd = fresh("after.txt", "after");
    res("open after closefrom", fd >= 0 && fd < 200);
    OURS("open after closefrom", fd);
    close(fd), U("release");
}

/* ---- the direct C API (polytropon.h), when the library is there ------------------------ */

static int libc_open(const char *p, int f, mode_t m) { return open(p, f, m); }

static void c_api(void) {
    struct {
        int (*open)(const char *, int, mode_t);
        int (*close)(int);
        ssize_t (*read)(int, void *, size_t);
        ssize_t (*write)(int, const void *, size_t);
        ssize_t (*pread)(int, void *, size_t, off_t);
        ssize_t (*pwrite)(int, const void *, size_t, off_t);
        off_t (*lseek)(int, off_t, int);
        int (*fsync)(int);
        int (*stat)(const char *, struct stat *);
        int (*unlink)(const char *);
    } api = {libc_open, close, read, write, pread, pwrite, lseek, fsync, stat, unlink};
    if (dlsym(RTLD_DEFAULT, "polytropon_pread")) {
        api.open = dlsym(RTLD_DEFAULT, "polytropon_open");
        api.close = dlsym(RTLD_DEFAULT, "polytropon_close");
        api.read = dlsym(RTLD_DEFAULT, "polytropon_read");
        api.write = dlsym(RTLD_DEFAULT, "polytropon_write");
        api.pread = dlsym(RTLD_DEFAULT, "polytropon_pread");
        api.pwrite = dlsym(RTLD_DEFAULT, "polytropon_pwrite");
        api.lseek = dlsym(RTLD_DEFAULT, "polytropon_lseek");
        api.fsync = dlsym(RTLD_DEFAULT, "polytropon_fsync");
        api.stat = dlsym(RTLD_DEFAULT, "polytropon_stat");
        api.unlink = dlsym(RTLD_DEFAULT, "polytropon_unlink");
        fprintf(stderr, "C API: the library's\n");
    } else {
        fprintf(stderr, "C API: libc's\n");
    }
    char path[PATH_MAX + 16], buf[64];
    snprintf(path, sizeof path, "%s/capi.bin", base);
    int fd = api.open(path, O_CREAT | O_RDWR | O_TRUNC, 0666);
    U("open_path");
    res("api open", fd >= 0);
    OURS("polytropon_open", fd);
    res("api pwrite", api.pwrite(fd, "0123456789", 10, 0)), U("write");
    res("api pwrite past the end", api.pwrite(fd, "abc", 3, 20)), U("write");
    memset(buf, '.', sizeof buf);
    long n = api.pread(fd, buf, sizeof buf, 0);
    U("read");
    bytes("api pread", buf, n);
    n = api.pread(fd, buf, 4, 21), U("read");
    bytes("api pread at 21", buf, n);
    res("api pread past the end", api.pread(fd, buf, 4, 100)), U("read");
    res("api pread negative", api.pread(fd, buf, 4, -1));
    res("api write", api.write(fd, "xyz", 3)), U("write");
    res("api lseek", api.lseek(fd, 0, SEEK_CUR));
    res("api lseek end", api.lseek(fd, 0, SEEK_END)), U("getattr");
    api.lseek(fd, 1, SEEK_SET);
    n = api.read(fd, buf, 4), U("read");
    bytes("api read", buf, n);
    res("api fsync", api.fsync(fd)), U("fsync");
    struct stat st;
    st_line("api stat", api.stat(path, &st), &st), U("stat_path");
    res("api close", api.close(fd)), U("release");
    res("api pread closed", api.pread(fd, buf, 1, 0));
    res("api pwrite bad", api.pwrite(-1, buf, 1, 0));
    res("api unlink", api.unlink(path)), U("unlink_path");
    st_line("api stat unlinked", api.stat(path, &st), &st), U("stat_path");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    preloaded = dlsym(RTLD_DEFAULT, "polytropon_pread") != NULL;
    if (argc < 2 || chdir(argv[1])) {
        perror("working directory");
        return 2;
    }
    char *b = realpath(".", base);
    if (!b) return perror("realpath ."), 2;
    struct stat here;
    if (syscall(SYS_stat, ".", &here) != 0) return perror("stat ."), 2;
    mount_dev = here.st_dev;
    umask(022);
    res("umask", umask(027));

    data_calls();
    int dfd = open(".", O_RDONLY | O_DIRECTORY);
    res("open directory", dfd >= 0);
    KERNELS("open directory", dfd);
    open_calls(dfd);
    name_calls(dfd);
    stat_calls(dfd);
    dir_calls(dfd);
    copy_calls();
    c_api();
    res("umask 0", umask(0));
    close(fresh("umask0.txt", "0")), U("release");
    struct stat st;
    st_line("created under umask 0", stat("umask0.txt", &st), &st), U("stat_path");
    umask(027);
    kernel_calls();
    close_calls();
    process_calls();
    close(dfd);

    for (int i = 0; i < ntally; i++) printf("expect %s %s %d\n", tally[i].side, tally[i].op, tally[i].n);
    return 0;
}
