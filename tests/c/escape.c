/* The escape probe run inside containers (tests/containers.rs): each line names one attempt
 * to reach the host or another tenant and says "refused ERRNO" or "ESCAPED". Built static, so
 * that it runs on the FUSE path whatever the image holds.
 *
 * Usage: escape PATH_OF_A_BLOCK_DEVICE_NODE_TO_MAKE, or escape --euid (prints the effective
 * uid: run set-user-id to see whether exec granted it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <grp.h>

static void say(const char *what, long r) {
    if (r < 0)
        printf("%s refused %s\n", what, strerrorname_np(errno));
    else
        printf("%s ESCAPED\n", what);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--as-1000") == 0) {
        /* Becomes uid 1000 and runs argv[2] --euid (a set-user-id copy of this probe). */
        gid_t none[1] = {1000};
        if (setgroups(1, none) < 0 || setgid(1000) < 0 || setuid(1000) < 0) {
            perror("setuid");
            return 1;
        }
        execl(argv[2], argv[2], "--euid", (char *)NULL);
        perror("exec");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--euid") == 0) {
        printf("euid %d\n", (int)geteuid());
        return 0;
    }
    const char *node = argc > 1 ? argv[1] : "/tmp/sda";
    char buf_keys[64];
    say("mount", mount("x", "/mnt", "tmpfs", 0, NULL));
    say("mount_x32", syscall(0x40000000 | SYS_mount, "x", "/mnt", "tmpfs", 0, NULL));
    say("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    long made = mknod(node, S_IFBLK | 0600, makedev(8, 0));
    if (made < 0 && errno == EEXIST)
        made = 0;
    printf("mknod_made %s\n", made == 0 ? "yes" : strerrorname_np(errno));
    say("open_block_device", open(node, O_RDONLY));
    say("open_dev_mem", open("/dev/mem", O_RDONLY));
    int fd = open("/proc/sysrq-trigger", O_WRONLY);
    say("sysrq", fd < 0 ? -1 : write(fd, "h", 1));
    fd = open("/proc/sys/kernel/hostname", O_WRONLY);
    say("sysctl", fd < 0 ? -1 : write(fd, "x", 1));
    fd = open("/proc/keys", O_RDONLY);
    say("proc_keys", fd < 0 ? -1 : (read(fd, buf_keys, sizeof buf_keys) > 0 ? 0 : (errno = ENODATA, -1)));
    fd = open("/proc/kcore", O_RDONLY);
    char buf[16];
    say("kcore", fd < 0 ? -1 : (read(fd, buf, sizeof buf) > 0 ? 0 : (errno = ENODATA, -1)));
    say("init_module", syscall(SYS_init_module, buf, sizeof buf, ""));
    say("finit_module", syscall(SYS_finit_module, 0, "", 0));
    say("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    say("bpf", syscall(SYS_bpf, 0, NULL, 0));
    say("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    /* Allowed to any process without the filter: its refusal shows the filter. */
    say("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
    say("unshare_user", unshare(CLONE_NEWUSER));
    say("clone_newuser", syscall(SYS_clone, CLONE_NEWUSER | 17 /* SIGCHLD */, 0, 0, 0, 0));
    say("clone3", syscall(SYS_clone3, NULL, 0));
    say("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0));
    say("reboot", syscall(SYS_reboot, 0xfee1dead, 672274793, 0x1234567, NULL));
    say("swapon", syscall(SYS_swapon, "/tmp/none", 0));
    say("ptrace_init", syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0));
    fd = open("/proc/1/ns/mnt", O_RDONLY);
    say("setns_init_mnt", fd < 0 ? -1 : setns(fd, 0));
    say("write_proc_1_exe", open("/proc/1/exe", O_WRONLY));
    say("write_proc_self_exe", open("/proc/self/exe", O_WRONLY));
    printf("done\n");
    return 0;
}
