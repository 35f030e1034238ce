// libc pieces Swift's Glibc module does not import cleanly: GNU-only constants and calls whose
// struct and function share a name.
#ifndef ENVMOUNT_CSYS_H
#define ENVMOUNT_CSYS_H
#include <stddef.h>
#include <stdint.h>

/// lseek whence values that need _GNU_SOURCE.
/// The pid of a connected Unix socket's peer (SO_PEERCRED; struct ucred needs _GNU_SOURCE),
/// or -1 with errno set.
int envmount_peer_pid(int fd);
/// Whether the page of `fd` holding byte `offset` is in the page cache: a one-byte
/// preadv2(RWF_NOWAIT), which never waits on the disk. 1 or 0; -1 with errno where the read
/// fails otherwise (EOPNOTSUPP: a file system without non-blocking reads).
int envmount_page_cached(int fd, uint64_t offset);
/// Whether `path` (not followed if a symlink) is the root of a mount: statx's
/// STATX_ATTR_MOUNT_ROOT (Linux 5.8). 1 or 0; -1 with errno when statx fails (ENOTCONN: a FUSE
/// mount whose daemon is gone) or does not report the attribute (EOPNOTSUPP).
int envmount_is_mount_root(const char *path);
/// The mount ID (as /proc/self/mountinfo numbers it) of the mount holding `path`, not followed
/// if a symlink: statx's STATX_MNT_ID (Linux 5.8); -1 with errno otherwise.
int64_t envmount_mount_id(const char *path);
int envmount_seek_data(void);
int envmount_seek_hole(void);
/// open(2) flag O_NOATIME (GNU): reading does not update the file's access time.
int envmount_o_noatime(void);
/// statfs(2) f_type of the file system holding `path`; -1 with errno on failure.
int envmount_statfs_type(const char *path, long *type);
/// statvfs(3): bytes available to unprivileged users; -1 with errno on failure.
int envmount_statvfs_avail(const char *path, uint64_t *bytes);
/// syncfs(2): flush the file system holding `fd`.
int envmount_syncfs(int fd);
/// umount2(path, MNT_DETACH): lazy unmount, for a stale FUSE mount left by a killed daemon.
int envmount_umount_lazy(const char *path);
/// memmem(3) (GNU): the first occurrence of needle in haystack, or NULL.
const void *envmount_memmem(const void *haystack, size_t hlen, const void *needle, size_t nlen);
/// gnu_get_libc_version(3): this machine's glibc version, e.g. "2.36".
const char *envmount_glibc_version(void);
/// mount(2) with MS_NOSUID | MS_NODEV (as FUSE mounts have): `source` on `target` as `fstype` with option string `data`.
int envmount_mount(const char *source, const char *target, const char *fstype, const char *data);
/// umount2(path, 0): unmount now, EBUSY while files are open.
int envmount_umount(const char *path);
/// lsetxattr(2): sets an extended attribute without following a symlink.
int envmount_lsetxattr(const char *path, const char *name, const void *value, unsigned long size);
/// flock(fd, LOCK_EX): an exclusive lock on the open file (Swift sees `flock` as the struct).
int envmount_flock_exclusive(int fd);
/// posix_spawn of `path` with `argv`/`envp` (NULL-terminated; envp NULL: this process's), in
/// `cwd` (NULL: here), stdin from /dev/null and stdout+stderr appended to `outfile` (NULL: inherited),
/// in a process group of its own (so a timeout can stop its children too). 0 or an errno.
int envmount_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
                   const char *outfile, int *pid);

/// posix_spawn of `path` with `argv` (NULL-terminated) and this process's environment, the
/// child's fd i (0, 1, 2) a dup of `stdio[i]`, or /dev/null where that is -1; every other
/// descriptor closed in the child, which gets a process group of its own. 0 or an errno.
int envmount_spawn_stdio(const char *path, char *const argv[], const int stdio[3], int *pid);

/// pipe2(fds, O_CLOEXEC) (a GNU call the Swift Glibc module does not show). 0 or -1 and errno.
int envmount_pipe_cloexec(int fds[2]);

/// pthread_setname_np for the calling thread (at most 15 bytes). 0 or an errno.
int envmount_set_thread_name(const char *name);

/// What `envmount_stat_names` reports per name: `error` is 0 or the errno of its fstatat.
struct envmount_name_stat {
    int64_t mtime_ns;
    int64_t ctime_ns;
    uint64_t size;
    uint64_t inode;
    uint32_t mode;      /* st_mode, file type included */
    int32_t error;
};
/// Opens directory `path` as an O_PATH descriptor, not following a symlink in its last
/// component (a symlink there: ENOTDIR). -1 with errno.
int envmount_open_directory(const char *path);
/// Opens directory `path` (relative, NUL-terminated) below the O_PATH directory `root` as an
/// O_PATH descriptor, following no symlink in any component and never leaving `root`:
/// openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH), or where the kernel lacks openat2 (before
/// 5.6, or a seccomp filter that refuses it) one openat(O_NOFOLLOW) per component.
/// -1 with errno (ELOOP or ENOTDIR for a symlink on the way).
int envmount_open_directory_beneath(int root, const char *path);
/// The fallback of envmount_open_directory_beneath: one openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)
/// per component of `path` below `root`; a `..` component is refused (EXDEV).
int envmount_open_directory_components(int root, const char *path);
/// fstatat(dir, name, AT_SYMLINK_NOFOLLOW) of `count` names, one path component each: name k is
/// the bytes names[starts[k] ..< starts[k] + lengths[k]] (no NUL; over NAME_MAX bytes gives
/// ENAMETOOLONG). Fills out[k]; one call per directory instead of one per file from Swift.
void envmount_stat_names(int dir, const uint8_t *names, const uint32_t *starts, const uint16_t *lengths,
                         size_t count, struct envmount_name_stat *out);
#endif
