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
#include <pthread.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/uio.h>

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

/// Spawns `path` in a process group of its own with the file actions `fa` set up so far (`rc`
/// is their first failure, or 0), then frees them; the child's pid in `*pid`.
static int spawn_in_own_group(const char *path, char *const argv[], char *const envp[],
                              posix_spawn_file_actions_t *fa, int rc, int *pid) {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t child = 0;
    if (rc == 0) rc = posix_spawn(&child, path, fa, &attr, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(fa);
    posix_spawnattr_destroy(&attr);
    if (rc == 0) *pid = (int)child;
    return rc;
}

int envmount_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
                   const char *outfile, int *pid) {
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) return rc;
    if (cwd) rc = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0 && outfile) rc = posix_spawn_file_actions_addopen(&fa, 1, outfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (rc == 0 && outfile) rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
    return spawn_in_own_group(path, argv, envp, &fa, rc, pid);
}

int envmount_spawn_stdio(const char *path, char *const argv[], const int stdio[3], int *pid) {
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) return rc;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = stdio[i] >= 0 ? posix_spawn_file_actions_adddup2(&fa, stdio[i], i)
                           : posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    return spawn_in_own_group(path, argv, NULL, &fa, rc, pid);
}

int envmount_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int envmount_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

int envmount_open_directory(const char *path) {
    return open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* struct open_how and the RESOLVE_ flags of <linux/openat2.h>, spelt out so that the build
 * does not depend on the kernel headers' version. */
struct envmount_open_how { uint64_t flags, mode, resolve; };
#define ENVMOUNT_RESOLVE_NO_SYMLINKS 0x04
#define ENVMOUNT_RESOLVE_BENEATH 0x08
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
/* 0: not tried yet, 1: openat2 works, -1: it does not (ENOSYS, or EPERM from a seccomp filter). */
static atomic_int have_openat2;

int envmount_open_directory_components(int root, const char *path) {
    char part[NAME_MAX + 1];
    int cur = root;
    const char *p = path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n > NAME_MAX) { if (cur != root) close(cur); errno = ENAMETOOLONG; return -1; }
        if (n > 0) {
            memcpy(part, p, n);
            part[n] = 0;
            if (strcmp(part, "..") == 0) { if (cur != root) close(cur); errno = EXDEV; return -1; }
            int next = openat(cur, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int e = errno;
            if (cur != root) close(cur);
            if (next < 0) { errno = e; return -1; }
            cur = next;
        }
        p += n;
        if (*p == '/') p++;
    }
    return cur == root ? fcntl(root, F_DUPFD_CLOEXEC, 0) : cur;
}

int envmount_open_directory_beneath(int root, const char *path) {
    if (atomic_load_explicit(&have_openat2, memory_order_relaxed) >= 0) {
        struct envmount_open_how how = {
            .flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .mode = 0,
            .resolve = ENVMOUNT_RESOLVE_NO_SYMLINKS | ENVMOUNT_RESOLVE_BENEATH,
        };
        long fd;
        do { fd = syscall(SYS_openat2, root, path, &how, sizeof how); } while (fd < 0 && errno == EINTR);
        if (fd >= 0) { atomic_store_explicit(&have_openat2, 1, memory_order_relaxed); return (int)fd; }
        if (errno != ENOSYS && errno != EPERM) return -1;
        atomic_store_explicit(&have_openat2, -1, memory_order_relaxed);
    }
    return envmount_open_directory_components(root, path);
}

void envmount_stat_names(int dir, const uint8_t *names, const uint32_t *starts, const uint16_t *lengths,
                         size_t count, struct envmount_name_stat *out) {
    char name[NAME_MAX + 1];
    for (size_t k = 0; k < count; k++) {
        struct envmount_name_stat *r = &out[k];
        memset(r, 0, sizeof *r);
        size_t n = lengths[k];
        if (n == 0 || n > NAME_MAX) { r->error = n ? ENAMETOOLONG : ENOENT; continue; }
        memcpy(name, names + starts[k], n);
        name[n] = 0;
        struct stat st;
        int rc;
        do { rc = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW); } while (rc != 0 && errno == EINTR);
        if (rc != 0) { r->error = errno; continue; }
        r->mode = st.st_mode;
        r->size = (uint64_t)st.st_size;
        r->inode = (uint64_t)st.st_ino;
        r->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        r->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    }
}

int envmount_peer_pid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    return cred.pid;
}

int envmount_page_cached(int fd, uint64_t offset) {
    char byte;
    struct iovec v = { &byte, 1 };
    if (preadv2(fd, &v, 1, (off_t)offset, RWF_NOWAIT) >= 0) return 1;
    return errno == EAGAIN ? 0 : -1;
}

int envmount_is_mount_root(const char *path) {
    struct statx st;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE, &st) != 0) return -1;
    if (!(st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) { errno = EOPNOTSUPP; return -1; }
    return (st.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? 1 : 0;
}

int64_t envmount_mount_id(const char *path) {
    struct statx st;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_MNT_ID, &st) != 0) return -1;
    if (!(st.stx_mask & STATX_MNT_ID)) { errno = EOPNOTSUPP; return -1; }
    return (int64_t)st.stx_mnt_id;
}
