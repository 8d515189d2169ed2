/* Directory descriptors: open(O_DIRECTORY) and its spellings, and every call on such a
 * descriptor (fstat, fcntl, getdents64 with lseek, fsync, the *at calls relative to it,
 * fchdir, fdopendir, dup, pread/write errors, fchmod, flock, fstatfs, exec inheritance) and
 * read permission as another user. Run in the current directory, on a plain directory and on
 * a pool mount under the preload library: the output must be the same. The first part opens
 * directories only in ways the library serves without the kernel opening them; it ends with
 * "-- kernel opens from here" and the number of directory opens it made. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void res(const char *what, long r) {
    if (r < 0) printf("%s: -1 %s\n", what, strerrorname_np(errno));
    else printf("%s: ok\n", what);
    errno = 0;
}

static void val(const char *what, long v) { printf("%s: %ld\n", what, v); }

/* Entries of open directory `fd` from its position, through getdents64 (ours or libc's). */
static long entries(int fd) {
    char buf[512];
    long n = 0, m;
    while ((m = getdents64(fd, buf, sizeof buf)) > 0)
        for (long off = 0; off < m; off += ((struct dirent64 *)(buf + off))->d_reclen) n++;
    return m < 0 ? -1 : n;
}

/* Entries through the getdents64 system call itself (the kernel's view of the descriptor). */
static long raw_entries(int fd) {
    char buf[4096];
    long n = 0, m;
    while ((m = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
        for (long off = 0; off < m; off += ((struct dirent64 *)(buf + off))->d_reclen) n++;
    return m < 0 ? -1 : n;
}

static void mode_line(const char *what, int r, const struct stat *st) {
    if (r) printf("%s: -1 %s\n", what, strerrorname_np(errno));
    else printf("%s: dir %d mode %o\n", what, S_ISDIR(st->st_mode), st->st_mode & 07777);
    errno = 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "child")) {
        /* exec'd with an inherited directory descriptor: the kernel lists it. */
        int fd = atoi(argv[2]);
        lseek(fd, 0, SEEK_SET);
        val("inherited raw getdents64 entries", raw_entries(fd));
        return 0;
    }
    int opens = 0;
    mkdir("d", 0755);
    mkdir("d/sub", 0755);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "d/f%d", i);
        close(open(name, O_CREAT | O_WRONLY, 0644));
    }
    symlink("f0", "d/link");

    /* Many opens and listings, as find, ls -R, python's os.walk and dpkg make. */
    long total = 0;
    for (int i = 0; i < 200; i++) {
        int fd = open("d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        opens++;
        total += entries(fd);
        close(fd);
    }
    val("200 listings, entries", total);

    int fd = open("d", O_RDONLY | O_DIRECTORY);
    opens++;
    res("open O_DIRECTORY", fd);
    struct stat st;
    mode_line("fstat", fstat(fd, &st), &st);
    mode_line("fstatat empty path", fstatat(fd, "", &st, AT_EMPTY_PATH), &st);
    val("F_GETFD", fcntl(fd, F_GETFD));
    val("entries", entries(fd));
    val("entries at the end", entries(fd));
    val("lseek 0", lseek(fd, 0, SEEK_SET));
    val("entries after lseek", entries(fd));
    res("fsync", fsync(fd));
    res("fdatasync", fdatasync(fd));
    char b[8];
    res("pread", pread(fd, b, sizeof b, 0));
    res("write", write(fd, "x", 1));

    /* Calls relative to it. */
    int f = openat(fd, "new", O_CREAT | O_WRONLY, 0640);
    res("openat create", f);
    res("write new", write(f, "hello", 5));
    close(f);
    mode_line("fstatat new", fstatat(fd, "new", &st, 0), &st);
    res("mkdirat", mkdirat(fd, "sub2", 0700));
    res("renameat", renameat(fd, "sub2", fd, "sub3"));
    res("unlinkat removedir", unlinkat(fd, "sub3", AT_REMOVEDIR));
    res("symlinkat", symlinkat("new", fd, "ln2"));
    char target[64] = {0};
    val("readlinkat length", readlinkat(fd, "ln2", target, sizeof target - 1));
    printf("readlinkat: %s\n", target);
    res("faccessat", faccessat(fd, "new", R_OK | W_OK, 0));
    res("unlinkat", unlinkat(fd, "ln2", 0));
    int sub = openat(fd, "sub", O_RDONLY | O_DIRECTORY);
    opens++;
    res("openat directory", sub);
    val("sub entries", entries(sub));
    res("openat file as directory", openat(fd, "new", O_RDONLY | O_DIRECTORY));
    res("openat missing", openat(fd, "missing", O_RDONLY | O_DIRECTORY));
    close(sub);

    /* Duplicates share the position. */
    lseek(fd, 0, SEEK_SET);
    int d1 = dup(fd);
    char one[64];
    long first = getdents64(d1, one, sizeof one);
    printf("dup: first batch %s\n", first > 0 ? "read" : "empty");
    val("dup2", dup2(fd, 77));
    val("entries through the dup2 copy after the dup's batch", entries(77));
    close(d1);
    close(77);

    /* fdopendir, and the descriptor it takes. */
    int fd2 = open("d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    opens++;
    DIR *dir = fdopendir(fd2);
    long n = 0;
    while (readdir(dir)) n++;
    val("fdopendir entries", n);
    val("dirfd is the descriptor", dirfd(dir) == fd2);
    closedir(dir);

    /* A directory opened without O_DIRECTORY is a directory all the same. */
    int plain = open("d", O_RDONLY);
    opens++;
    res("open without O_DIRECTORY", plain);
    mode_line("fstat of it", fstat(plain, &st), &st);
    val("its entries", entries(plain));
    close(plain);
    res("open a file O_DIRECTORY", open("d/f1", O_RDONLY | O_DIRECTORY));
    res("open missing O_DIRECTORY", open("missing", O_RDONLY | O_DIRECTORY));
    res("open directory O_WRONLY", open("d", O_WRONLY));
    res("open directory O_RDWR | O_DIRECTORY", open("d", O_RDWR | O_DIRECTORY));

    /* fchdir moves the working directory there. */
    int here = open(".", O_RDONLY | O_DIRECTORY);
    opens++;
    res("fchdir", fchdir(fd));
    res("open relative after fchdir", f = open("f2", O_RDONLY));
    close(f);
    char cwd[4096];
    printf("cwd ends in /d: %d\n", getcwd(cwd, sizeof cwd) && strlen(cwd) > 2 && !strcmp(cwd + strlen(cwd) - 2, "/d"));
    res("fchdir back", fchdir(here));
    close(here);

    /* Read permission is the caller's. */
    mkdir("closed", 0311);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) _exit(3);
        res("other user: open unreadable directory", open("closed", O_RDONLY | O_DIRECTORY));
        res("other user: open readable directory", f = open("d", O_RDONLY | O_DIRECTORY));
        val("other user: its entries", entries(f));
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    val("other user's exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    printf("-- kernel opens from here, after %d directory opens\n", opens);
    fflush(stdout);

    /* Calls only the kernel serves on an open directory. */
    val("F_GETFL", fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK | O_DIRECTORY));
    res("fchmod", fchmod(fd, 0750));
    mode_line("stat after fchmod", stat("d", &st), &st);
    res("futimens", futimens(fd, NULL));
    res("utimensat of the descriptor", utimensat(fd, NULL, NULL, 0));
    res("flock", flock(fd, LOCK_EX));
    res("unlock", flock(fd, LOCK_UN));
    struct statfs sfs;
    res("fstatfs", fstatfs(fd, &sfs));
    lseek(fd, 0, SEEK_SET);
    val("entries after the kernel opened it", entries(fd));
    lseek(fd, 0, SEEK_SET);
    val("raw getdents64 entries", raw_entries(fd));
    close(fd);

    /* An inherited descriptor is a directory the new program can list. */
    int inherit = open("d", O_RDONLY | O_DIRECTORY);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char num[16];
        snprintf(num, sizeof num, "%d", inherit);
        execl("/proc/self/exe", argv[0], "child", num, (char *)NULL);
        _exit(4);
    }
    waitpid(pid, &status, 0);
    val("exec'd child's exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    close(inherit);
    return 0;
}
