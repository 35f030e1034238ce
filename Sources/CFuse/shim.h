// libfuse3 lowlevel API for Swift. FUSE_USE_VERSION must be >= 312 so that
// fuse_session_loop_mt is a real function, not a macro Swift cannot import.
#ifndef ENVMOUNT_CFUSE_SHIM_H
#define ENVMOUNT_CFUSE_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <errno.h>
#include <stddef.h>

/// The file_info bitfields, set through functions so the Swift side needs no bitfield layout.
static inline void cfuse_fi_set_keep_cache(struct fuse_file_info *fi) { fi->keep_cache = 1; }
static inline void cfuse_fi_set_cache_readdir(struct fuse_file_info *fi) { fi->cache_readdir = 1; }
static inline int cfuse_fi_flags(const struct fuse_file_info *fi) { return fi->flags; }

/// A one-buffer bufvec over a file range (FUSE_BUFVEC_INIT is a macro).
static inline struct fuse_bufvec cfuse_fd_bufvec(int fd, off_t pos, size_t size) {
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
    bv.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    bv.buf[0].fd = fd;
    bv.buf[0].pos = pos;
    return bv;
}

/// Replies to a READ with a file range, spliced where the kernel allows.
static inline int cfuse_reply_fd(fuse_req_t req, int fd, off_t pos, size_t size) {
    struct fuse_bufvec bv = cfuse_fd_bufvec(fd, pos, size);
    return fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/// Puts a file range into the kernel's page cache as inode `ino`'s contents at `offset`
/// (FUSE_NOTIFY_STORE; the kernel must already know the inode). 0 or -errno.
static inline int cfuse_notify_store_fd(struct fuse_session *se, fuse_ino_t ino, off_t offset, int fd, off_t pos, size_t size) {
    struct fuse_bufvec bv = cfuse_fd_bufvec(fd, pos, size);
    return fuse_lowlevel_notify_store(se, ino, offset, &bv, FUSE_BUF_SPLICE_MOVE);
}

static inline void cfuse_conn_tune(struct fuse_conn_info *conn, unsigned max_readahead) {
    conn->max_readahead = max_readahead;
    // Always READDIRPLUS (not the adaptive AUTO mode): a listing then carries every child's
    // attributes, so `find`/`ls -l` need no LOOKUP per entry (8x faster cold `find` here).
    if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
    if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
    if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
    if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
}
#endif
