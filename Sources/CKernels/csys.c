#define _GNU_SOURCE
#include <sys/file.h>
#include "csys.h"
#include <unistd.h>
#include <fcntl.h>
#include <sys/vfs.h>
#include <sys/statvfs.h>
#include <sys/mount.h>
#include <string.h>
#include <gnu/libc-version.h>
#include <sys/xattr.h>
#include <spawn.h>

extern char **environ;

int envmount_seek_data(void) { return SEEK_DATA; }
int envmount_seek_hole(void) { return SEEK_HOLE; }
int envmount_o_noatime(void) { return O_NOATIME; }

int envmount_statfs_type(const char *path, long *type) {
    struct statfs s;
    if (statfs(path, &s) != 0) return -1;
    *type = (long)s.f_type;
    return 0;
}

int envmount_statvfs_avail(const char *path, uint64_t *bytes) {
    struct statvfs s;
    if (statvfs(path, &s) != 0) return -1;
    *bytes = (uint64_t)s.f_bavail * (uint64_t)s.f_frsize;
    return 0;
}

int envmount_umount_lazy(const char *path) { return umount2(path, MNT_DETACH); }

int envmount_mount(const char *source, const char *target, const char *fstype, const char *data) {
    return mount(source, target, fstype, MS_NOSUID | MS_NODEV, data);
}

int envmount_umount(const char *path) { return umount2(path, 0); }

int envmount_syncfs(int fd) { return syncfs(fd); }

const void *envmount_memmem(const void *haystack, size_t hlen, const void *needle, size_t nlen) {
    return memmem(haystack, hlen, needle, nlen);
}

const char *envmount_glibc_version(void) { return gnu_get_libc_version(); }

int envmount_lsetxattr(const char *path, const char *name, const void *value, unsigned long size) {
    return lsetxattr(path, name, value, size, 0);
}
int envmount_flock_exclusive(int fd) { return flock(fd, LOCK_EX); }

int envmount_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
                   const char *outfile, int *pid) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) return rc;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    if (cwd) rc = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0 && outfile) rc = posix_spawn_file_actions_addopen(&fa, 1, outfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (rc == 0 && outfile) rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t child = 0;
    if (rc == 0) rc = posix_spawn(&child, path, &fa, &attr, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc == 0) *pid = (int)child;
    return rc;
}
