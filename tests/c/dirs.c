/* Directory streams, listings and filesystem statistics, printing only what does not depend
 * on the filesystem: run on a plain directory and on a pool mount under the preload library,
 * the output must be the same. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILES 3000

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static int ends_in_7(const struct dirent *e) { return e->d_name[strlen(e->d_name) - 1] == '7'; }

static int count(DIR *d) {
    int n = 0;
    while (readdir(d)) n++;
    return n;
}

static int getdents_count(int fd) {
    char buf[1024];
    int n = 0;
    for (;;) {
        long m = getdents64(fd, buf, sizeof buf);
        if (m < 0) return -errno;
        if (m == 0) return n;
        for (long off = 0; off < m;) {
            struct dirent64 *e = (struct dirent64 *)(buf + off);
            n++;
            off += e->d_reclen;
        }
    }
}

/* What two statfs answers for the same filesystem share (free counts move with the host). */
static int same_statfs(const struct statfs *a, const struct statfs *b) {
    return a->f_type == b->f_type && a->f_bsize == b->f_bsize && a->f_blocks == b->f_blocks && a->f_files == b->f_files &&
           a->f_namelen == b->f_namelen && a->f_frsize == b->f_frsize && a->f_flags == b->f_flags &&
           !memcmp(&a->f_fsid, &b->f_fsid, sizeof a->f_fsid);
}

int main(void) {
    char p[300];
    if (mkdir("big", 0755)) return perror("mkdir"), 1;
    for (int i = 0; i < FILES; i++) {
        snprintf(p, sizeof p, "big/file-with-a-rather-long-name-%04d", i);
        int fd = open(p, O_CREAT | O_WRONLY, 0644);
        if (fd < 0) return perror("create"), 1;
        close(fd);
    }
    mkdir("big/sub", 0755);
    symlink("nowhere", "big/link");

    DIR *d = opendir("big");
    if (!d) return perror("opendir"), 1;
    int n = 0, regs = 0, dirs = 0, links = 0, dots = 0;
    long mid = -1;
    char midname[256] = "";
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d))) {
        n++;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) dots++;
        else if (e->d_type == DT_REG) regs++;
        else if (e->d_type == DT_DIR) dirs++;
        else if (e->d_type == DT_LNK) links++;
        if (n == 1500) mid = telldir(d);
        if (n == 1501) strcpy(midname, e->d_name);
    }
    printf("readdir: %d entries, %d dots, %d files, %d dirs, %d links, errno %d\n", n, dots, regs, dirs, links, errno);
    seekdir(d, mid);
    e = readdir(d);
    printf("seekdir: %s\n", e && !strcmp(e->d_name, midname) ? "same entry" : "another entry");
    rewinddir(d);
    printf("rewinddir: %d\n", count(d));
    struct stat st;
    printf("fstatat via dirfd: %d\n", fstatat(dirfd(d), "sub", &st, 0) == 0 && S_ISDIR(st.st_mode));
    int rel = openat(dirfd(d), "file-with-a-rather-long-name-0042", O_RDONLY);
    printf("openat via dirfd: %d\n", rel >= 0);
    close(rel);
    closedir(d);

    d = opendir("big/");
    struct dirent ent, *res;
    int rn = 0;
    while (readdir_r(d, &ent, &res) == 0 && res) rn++;
    closedir(d);
    printf("readdir_r: %d\n", rn);

    int top = open(".", O_RDONLY | O_DIRECTORY);
    int sub = openat(top, "big", O_RDONLY | O_DIRECTORY);
    d = fdopendir(sub);
    printf("fdopendir: %d, dirfd kept: %d\n", d ? count(d) : -errno, d && dirfd(d) == sub);
    if (d) closedir(d);
    d = fdopendir(dup(top));
    int top_n = d ? count(d) : -errno;
    printf("listing .: %d\n", top_n);
    if (d) closedir(d);

    struct dirent **list;
    int k = scandir("big", &list, ends_in_7, alphasort);
    printf("scandir: %d, first %s, last %s\n", k, k > 0 ? list[0]->d_name : "-", k > 0 ? list[k - 1]->d_name : "-");
    for (int i = 0; i < k; i++) free(list[i]);
    if (k >= 0) free(list);
    k = scandirat(top, "big/sub", &list, NULL, alphasort);
    printf("scandirat: %d, %s %s\n", k, k > 1 ? list[0]->d_name : "-", k > 1 ? list[1]->d_name : "-");
    for (int i = 0; i < k; i++) free(list[i]);
    if (k >= 0) free(list);

    int g = open("big", O_RDONLY | O_DIRECTORY);
    int first = getdents_count(g);
    printf("getdents64: %d, at end: %d", first, getdents_count(g));
    lseek(g, 0, SEEK_SET);
    printf(", after lseek: %d\n", getdents_count(g));

    errno = 0;
    printf("opendir missing: %d\n", opendir("big/missing") ? 0 : errno);
    printf("opendir file: %d\n", opendir("big/file-with-a-rather-long-name-0001") ? 0 : errno);
    int f = open("big/file-with-a-rather-long-name-0002", O_RDONLY);
    printf("fdopendir file: %d\n", fdopendir(f) ? 0 : errno);
    char buf[256];
    printf("getdents64 file: %ld %d\n", (long)getdents64(f, buf, sizeof buf), errno);
    close(f);

    struct statfs a, b;
    int ra = statfs("big", &a), rb = syscall(SYS_statfs, "big", &b);
    printf("statfs: %d %d same %d\n", ra, rb, same_statfs(&a, &b));
    ra = fstatfs(g, &a), rb = syscall(SYS_fstatfs, g, &b);
    printf("fstatfs: %d %d same %d\n", ra, rb, same_statfs(&a, &b));
    ra = statfs(".", &a), rb = syscall(SYS_statfs, ".", &b);
    printf("statfs .: %d %d same %d\n", ra, rb, same_statfs(&a, &b));
    struct statvfs v, w;
    ra = statvfs("big/file-with-a-rather-long-name-0003", &v), rb = fstatvfs(g, &w);
    printf("statvfs: %d %d same %d\n", ra, rb, v.f_bsize == w.f_bsize && v.f_blocks == w.f_blocks && v.f_fsid == w.f_fsid && v.f_flag == w.f_flag && v.f_namemax == w.f_namemax);
    errno = 0;
    ra = statfs("big/missing", &a);
    printf("statfs missing: %d %d\n", ra, errno);
    close(g);
    close(top);

    /* realpath through links, dots and errors, printed relative to the working directory. */
    char cwd[4096], out[4096];
    if (!getcwd(cwd, sizeof cwd)) return perror("getcwd"), 1;
    symlink("sub", "big/tosub");
    symlink("tosub/../file-with-a-rather-long-name-0005", "big/chain");
    symlink("/", "big/root");
    symlink("loop", "big/loop");
    const char *paths[] = {"big/sub/../file-with-a-rather-long-name-0001", "big/tosub/.", "./big//chain", "big/root", "big/link",
                           "big/file-with-a-rather-long-name-0001/.", "big/loop", "big/missing/x", "big", "."};
    for (unsigned i = 0; i < sizeof paths / sizeof *paths; i++) {
        errno = 0;
        char *r = realpath(paths[i], out);
        int e = errno;
        const char *shown = r && !strncmp(r, cwd, strlen(cwd)) ? r + strlen(cwd) : r;
        printf("realpath %s: %s %d\n", paths[i], r ? (*shown ? shown : "(cwd)") : "-", r ? 0 : e);
    }
    char *m = canonicalize_file_name("big/chain");
    printf("canonicalize_file_name: %s\n", m && !strncmp(m, cwd, strlen(cwd)) ? m + strlen(cwd) : "-");
    free(m);

    /* Remove it all, listing as we go (entries removed while a stream is open). */
    d = opendir("big");
    int removed = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "big/%s", e->d_name);
        if ((e->d_type == DT_DIR ? rmdir(p) : unlink(p)) == 0) removed++;
    }
    closedir(d);
    int gone = rmdir("big");
    printf("removed: %d, rmdir: %d\n", removed, gone);
    return 0;
}
