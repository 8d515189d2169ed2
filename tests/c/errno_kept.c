/* readdir at the end of a directory leaves errno as it was: callers tell the end of a
 * listing from an error by errno alone (ls, find, tar, diff, rm and Python's os.scandir all
 * do), so nothing the library does to get the answer may show through.
 *
 * Usage: errno_kept [SERVICE_PID]. With a pid, the service is stopped for 400 ms while the
 * last readdir of each round waits for its answer (the wait outlasts a futex sleep, which
 * ends with ETIMEDOUT), as a loaded host would delay it. Prints the number of rounds; fails
 * naming the errno a listing's end left. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ENTRIES 3
#define ROUNDS 3

static pid_t service;

static void *resume_later(void *arg) {
    (void)arg;
    struct timespec t = {0, 400 * 1000 * 1000};
    nanosleep(&t, NULL);
    kill(service, SIGCONT);
    return NULL;
}

int main(int argc, char **argv) {
    service = argc > 1 ? (pid_t)atoi(argv[1]) : 0;
    char name[64];
    if (mkdir("kept", 0755) != 0 && errno != EEXIST) {
        perror("mkdir kept");
        return 1;
    }
    for (int i = 0; i < ENTRIES; i++) {
        snprintf(name, sizeof name, "kept/entry-%d", i);
        FILE *f = fopen(name, "w");
        if (!f) {
            perror(name);
            return 1;
        }
        fclose(f);
    }
    for (int round = 0; round < ROUNDS; round++) {
        DIR *d = opendir("kept");
        if (!d) {
            perror("opendir kept");
            return 1;
        }
        int n = 0;
        errno = EDOM;
        /* Every entry, "." and ".." included, comes in the first batch. */
        while (n < ENTRIES + 2 && readdir(d) != NULL) {
            n++;
            errno = EDOM;
        }
        pthread_t t;
        if (service > 0) {
            if (kill(service, SIGSTOP) != 0 || pthread_create(&t, NULL, resume_later, NULL) != 0) {
                perror("stopping the service");
                kill(service, SIGCONT);
                return 1;
            }
        }
        errno = EDOM;
        struct dirent *e = readdir(d);
        int err = errno;
        if (service > 0)
            pthread_join(t, NULL);
        if (e != NULL) {
            fprintf(stderr, "round %d: an entry after %d: %s\n", round, n, e->d_name);
            return 1;
        }
        if (err != EDOM) {
            fprintf(stderr, "round %d: the end of the listing (after %d entries) left errno %d (%s)\n", round, n, err, strerror(err));
            return 1;
        }
        closedir(d);
    }
    printf("rounds %d\n", ROUNDS);
    return 0;
}
