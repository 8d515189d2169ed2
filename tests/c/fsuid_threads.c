/* One thread drops its filesystem ids (setfsuid/setfsgid, per thread), then another thread
 * of the same process, still root, opens a root-only file several times; then the first
 * thread opens it. Prints what each open gave. Used by tests/learned.rs: what one thread's
 * opens found must not answer a thread with other credentials. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <unistd.h>

static const char *path;
static pthread_barrier_t step;

static void *dropper(void *arg) {
    (void)arg;
    setfsgid(1000);
    setfsuid(1000);
    pthread_barrier_wait(&step); /* ids dropped */
    pthread_barrier_wait(&step); /* the root thread opened the file */
    int fd = open(path, O_RDONLY);
    printf("dropped thread: %s\n", fd >= 0 ? "opened" : strerror(errno));
    if (fd >= 0)
        close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    path = argv[1];
    pthread_barrier_init(&step, NULL, 2);
    pthread_t t;
    if (pthread_create(&t, NULL, dropper, NULL) != 0)
        return 1;
    pthread_barrier_wait(&step);
    for (int i = 0; i < 3; i++) {
        char buf[64];
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            printf("root thread: %s\n", strerror(errno));
            return 1;
        }
        if (read(fd, buf, sizeof buf) < 0)
            return 1;
        close(fd);
    }
    printf("root thread: opened\n");
    pthread_barrier_wait(&step);
    pthread_join(t, NULL);
    return 0;
}
