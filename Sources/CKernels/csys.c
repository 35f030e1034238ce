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
