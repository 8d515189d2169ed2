/* polytropon.h: the direct user-level API, for programs that can be recompiled
 * (the papers' danaus_* functions). Link with -lpolytropon_preload.
 *
 * Configuration comes from the environment, resolved by `polytropon`:
 *   POLYTROPON_SHMID   the pool's shared-memory segment id (in the pool's IPC namespace)
 *   POLYTROPON_MOUNTS  MOUNTPOINT=INSTANCE[:MOUNTPOINT=INSTANCE...]
 * Paths must be absolute and under one of the mount points. Calls return what their libc
 * namesakes return, and set errno the same way.
 */
#ifndef POLYTROPON_H
#define POLYTROPON_H

#include <sys/types.h>
#include <sys/stat.h>

#ifdef __cplusplus
extern "C" {
#endif

int polytropon_open(const char *path, int flags, mode_t mode);
int polytropon_close(int fd);
ssize_t polytropon_read(int fd, void *buf, size_t count);
ssize_t polytropon_write(int fd, const void *buf, size_t count);
ssize_t polytropon_pread(int fd, void *buf, size_t count, off_t offset);
ssize_t polytropon_pwrite(int fd, const void *buf, size_t count, off_t offset);
off_t polytropon_lseek(int fd, off_t offset, int whence);
int polytropon_fsync(int fd);
int polytropon_stat(const char *path, struct stat *st);
int polytropon_unlink(const char *path);

#ifdef __cplusplus
}
#endif

#endif
