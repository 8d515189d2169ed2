/* Directory descriptors: open(O_DIRECTORY) and its spellings, and every call on such a
 * descriptor (fstat, fcntl, getdents64 with lseek, fsync, the *at calls relative to it,
 * fchdir, fdopendir, dup, pread/write errors, fchmod, flock, fstatfs, exec inheritance) and
 * read permission as another user. Run in the current directory, on a plain directory and on
 * a pool mount under the preload library: the output must be the same. `dir_handles first`
 * opens directories only in ways the library serves without the kernel opening them, and
 * ends with the number of directory opens it made; `dir_handles second` then makes the calls
 * only the kernel serves on an open directory. */
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
#include <spawn.h>
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

static int second(const char *self);

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "child")) {
        /* exec'd with an inherited directory descriptor: the kernel lists the rest of it. */
        val("inherited raw getdents64 entries", raw_entries(atoi(argv[2])));
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "second")) return second(argv[0]);
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

    /* O_NOFOLLOW: a directory, a symbolic link to one, a file. */
    symlink("d", "dlink");
    res("open O_NOFOLLOW directory", f = open("d", O_RDONLY | O_NOFOLLOW | O_DIRECTORY));
    opens++;
    val("its entries", entries(f));
    close(f);
    res("open O_NOFOLLOW link", open("dlink", O_RDONLY | O_NOFOLLOW));
    res("open O_NOFOLLOW | O_DIRECTORY link", open("dlink", O_RDONLY | O_NOFOLLOW | O_DIRECTORY));
    res("open O_NOFOLLOW | O_DIRECTORY file", open("d/f1", O_RDONLY | O_NOFOLLOW | O_DIRECTORY));
    res("open link to a directory", f = open("dlink", O_RDONLY | O_DIRECTORY));
    opens++;
    val("its entries", entries(f));
    close(f);
    printf("-- %d directory opens\n", opens);
    return 0;
}

/* Calls only the kernel serves on an open directory, and descriptors a new program inherits. */
static int second(const char *self) {
    int status, f;
    pid_t pid;
    int fd = open("d", O_RDONLY | O_DIRECTORY);
    struct stat st;
    const char *no_path = NULL; /* utimensat(fd, NULL, ...) is futimens(fd) */
    val("F_GETFL", fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK | O_DIRECTORY));
    char b[8];
    res("pread", pread(fd, b, sizeof b, 0));
    res("write", write(fd, "x", 1));
    res("fchmod", fchmod(fd, 0745));
    mode_line("stat after fchmod", stat("d", &st), &st);
    res("futimens", futimens(fd, NULL));
    res("utimensat of the descriptor", utimensat(fd, no_path, NULL, 0));
    res("flock", flock(fd, LOCK_EX));
    res("unlock", flock(fd, LOCK_UN));
    struct statfs sfs;
    res("fstatfs", fstatfs(fd, &sfs));
    lseek(fd, 0, SEEK_SET);
    val("entries after the kernel opened it", entries(fd));
    lseek(fd, 0, SEEK_SET);
    val("raw getdents64 entries", raw_entries(fd));
    close(fd);

    /* A copy closed where the library cannot see it (fclose of an fdopen'd stream) and its
     * number taken by a file: opening the directory in the kernel leaves that file alone. */
    int a = open("d", O_RDONLY | O_DIRECTORY);
    FILE *stream = fdopen(dup(a), "r");
    fclose(stream);
    int file = open("d/new", O_RDONLY);
    res("fchmod of the original", fchmod(a, 0745));
    char five[6] = {0};
    res("read of the file on the copy's number", read(file, five, 5));
    printf("it read: %s\n", five);
    close(file);
    close(a);

    /* Status flags of a directory opened without O_DIRECTORY. */
    int plain = open("d", O_RDONLY | O_NONBLOCK);
    val("F_GETFL without O_DIRECTORY", fcntl(plain, F_GETFL) & (O_ACCMODE | O_NONBLOCK | O_DIRECTORY));
    close(plain);

    /* The program's own O_PATH descriptor is no open directory. */
    int h = open("d", O_PATH);
    val("O_PATH: F_GETFL has O_PATH", (fcntl(h, F_GETFL) & O_PATH) != 0);
    res("O_PATH: getdents64", entries(h));
    res("O_PATH: fsync", fsync(h));
    res("O_PATH: fchmod", fchmod(h, 0700));
    res("O_PATH: flock", flock(h, LOCK_SH | LOCK_NB));
    mode_line("O_PATH: fstat", fstat(h, &st), &st);
    res("O_PATH: openat relative", f = openat(h, "f1", O_RDONLY));
    close(f);
    close(h);

    /* Read permission is the caller's. */
    mkdir("closed", 0311);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) _exit(3);
        res("other user: open unreadable directory", open("closed", O_RDONLY | O_DIRECTORY));
        res("other user: open readable directory", f = open("d", O_RDONLY | O_DIRECTORY));
        val("other user: its entries", entries(f));
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    val("other user's exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    /* Readable but not searchable, as another user. */
    mkdir("readonly", 0755);
    close(open("readonly/x", O_CREAT | O_WRONLY, 0644));
    chmod("readonly", 0444);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) _exit(3);
        int r = open("readonly", O_RDONLY | O_DIRECTORY);
        res("other user: open r-- directory", r);
        mode_line("other user: its fstat", fstat(r, &st), &st);
        val("other user: its entries", entries(r));
        res("other user: its fsync", fsync(r));
        val("other user: its F_GETFL", fcntl(r, F_GETFL) & (O_ACCMODE | O_DIRECTORY));
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    val("other user's exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    chmod("readonly", 0755);

    /* An inherited descriptor is a directory the new program lists from where it stood. */
    int inherit = open("d", O_RDONLY | O_DIRECTORY);
    char batch[64];
    val("entries before exec", getdents64(inherit, batch, sizeof batch) > 0);
    char num[16];
    snprintf(num, sizeof num, "%d", inherit);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", self, "child", num, (char *)NULL);
        _exit(4);
    }
    waitpid(pid, &status, 0);
    val("exec'd child's exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    close(inherit);

    /* A spawn's file actions copy a close-on-exec directory onto an inherited number. */
    int spawned = open("d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, spawned, 47);
    char *args[] = {(char *)self, "child", "47", NULL};
    fflush(stdout);
    res("posix_spawn", posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, environ) ? -1 : 0);
    waitpid(pid, &status, 0);
    val("spawned child's exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    posix_spawn_file_actions_destroy(&fa);
    close(spawned);
    return 0;
}
