import CFuse
import Glibc

/// The lowlevel operation table: capture-free closures that decode, call, and reply.
enum FuseOps {
    static func make() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            // SAFETY: userdata is the SessionContext retained by FuseSession.
            let ctx = Unmanaged<SessionContext>.fromOpaque(userdata).takeUnretainedValue()
            cfuse_conn_tune(conn, UInt32(ctx.config.readAheadKB * 1024))
        }
        ops.lookup = { req, parent, name in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.lookup)
            let nameBytes = FuseOps.bytes(of: name)
            do {
                var e = FuseOps.entryParam(try ctx.fs.lookup(parent: parent, name: nameBytes), ctx.config)
                fuse_reply_entry(req, &e)
            } catch let err as FuseError where err.errno == ENOENT {
                // A negative entry with a timeout: the kernel remembers that the name is absent,
                // which matters for Python's many failed stats during import.
                var e = fuse_entry_param()
                e.ino = 0
                e.entry_timeout = ctx.config.entryTimeout
                fuse_reply_entry(req, &e)
            } catch {
                fuse_reply_err(req, FuseOps.errnoOf(error))
            }
        }
        ops.getattr = { req, ino, _ in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.getattr)
            do {
                var st = FuseOps.statOf(try ctx.fs.getattr(ino: ino))
                fuse_reply_attr(req, &st, ctx.config.attrTimeout)
            } catch {
                fuse_reply_err(req, FuseOps.errnoOf(error))
            }
        }
        ops.readlink = { req, ino in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.readlink)
            do {
                var target = try ctx.fs.readlink(ino: ino)
                target.append(0)
                // SAFETY: NUL-terminated local copy, valid for the call; libfuse copies it.
                target.withUnsafeBufferPointer { p in
                    p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { _ = fuse_reply_readlink(req, $0) }
                }
            } catch {
                fuse_reply_err(req, FuseOps.errnoOf(error))
            }
        }
        ops.open = { req, ino, fi in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.open)
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            if ctx.config.zeroMessageOpen { fuse_reply_err(req, ENOSYS); return }
            do {
                try ctx.fs.open(ino: ino, flags: cfuse_fi_flags(fi))
                if ctx.config.keepCache { cfuse_fi_set_keep_cache(fi) }
                fuse_reply_open(req, fi)
            } catch {
                fuse_reply_err(req, FuseOps.errnoOf(error))
            }
        }
        ops.read = { req, ino, size, off, _ in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.read)
            do {
                switch try ctx.fs.read(ino: ino, offset: UInt64(off), size: size) {
                case let .bytes(data):
                    ctx.counters.countReadBytes(data.count)
                    // SAFETY: the array outlives the call; libfuse copies the bytes into the reply.
                    data.withUnsafeBytes { p in _ = fuse_reply_buf(req, p.baseAddress?.assumingMemoryBound(to: CChar.self), p.count) }
                case let .file(fd, offset, length):
                    ctx.counters.countReadBytes(length)
                    if ctx.config.splice {
                        _ = cfuse_reply_fd(req, fd, off_t(offset), length)
                    } else {
                        var buf = [UInt8](repeating: 0, count: length)
                        // SAFETY: pread writes at most `length` bytes into the local buffer.
                        let n = buf.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress, length, off_t(offset)) }
                        if n < 0 {
                            fuse_reply_err(req, EIO)
                        } else {
                            // SAFETY: `n` bytes of the local buffer were filled.
                            buf.withUnsafeBytes { p in _ = fuse_reply_buf(req, p.baseAddress?.assumingMemoryBound(to: CChar.self), n) }
                        }
                    }
                    Glibc.close(fd)
                }
            } catch {
                fuse_reply_err(req, FuseOps.errnoOf(error))
            }
        }
        ops.opendir = { req, ino, fi in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.opendir)
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            if ctx.config.zeroMessageOpen { fuse_reply_err(req, ENOSYS); return }
            do {
                try ctx.fs.opendir(ino: ino)
                cfuse_fi_set_keep_cache(fi)
                cfuse_fi_set_cache_readdir(fi)
                fuse_reply_open(req, fi)
            } catch {
                fuse_reply_err(req, FuseOps.errnoOf(error))
            }
        }
        ops.readdir = { req, ino, size, off, _ in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.readdir)
            FuseOps.replyDirectory(req, size) { add in
                try ctx.fs.readdir(ino: ino, offset: Int(off)) { name, childIno, mode, next in
                    add(name) { buf, room, cname in
                        var st = stat()
                        st.st_ino = UInt(childIno)
                        st.st_mode = mode
                        return fuse_add_direntry(req, buf, room, cname, &st, off_t(next))
                    }
                }
            }
        }
        ops.readdirplus = { req, ino, size, off, _ in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.readdirplus)
            FuseOps.replyDirectory(req, size) { add in
                try ctx.fs.readdirplus(ino: ino, offset: Int(off)) { name, childIno, attr, next in
                    add(name) { buf, room, cname in
                        var e: fuse_entry_param
                        if let attr {
                            e = FuseOps.entryParam(attr, ctx.config)
                        } else {
                            // `.` and `..`: ino 0 tells the kernel not to make a dentry for them.
                            e = fuse_entry_param()
                            e.attr.st_ino = UInt(childIno)
                            e.attr.st_mode = S_IFDIR
                        }
                        return fuse_add_direntry_plus(req, buf, room, cname, &e, off_t(next))
                    }
                }
            }
        }
        ops.statfs = { req, _ in
            let ctx = SessionContext.from(req)
            ctx.counters.count(.statfs)
            let s = ctx.fs.statfs()
            var v = statvfs()
            v.f_bsize = 4096
            v.f_frsize = 4096
            v.f_blocks = UInt(s.blocks)
            v.f_files = UInt(s.files)
            v.f_namemax = 255
            fuse_reply_statfs(req, &v)
        }
        // The rest answer as libfuse does when an operation is left out (so the kernel behaves
        // the same), and are here only to be counted. IOCTL: Python's isatty() on every file
        // it opens; the kernel turns ENOSYS into ENOTTY and, unlike FLUSH or GETXATTR, keeps
        // asking, so each costs a round trip.
        ops.ioctl = { req, _, _, _, _, _, _, _, _ in
            SessionContext.from(req).counters.count(.ioctl)
            fuse_reply_err(req, ENOSYS)
        }
        ops.flush = { req, _, _ in
            SessionContext.from(req).counters.count(.flush)
            fuse_reply_err(req, ENOSYS)
        }
        ops.release = { req, _, _ in
            SessionContext.from(req).counters.count(.release)
            fuse_reply_err(req, 0)
        }
        ops.releasedir = { req, _, _ in
            SessionContext.from(req).counters.count(.releasedir)
            fuse_reply_err(req, 0)
        }
        ops.getxattr = { req, _, _, _ in
            SessionContext.from(req).counters.count(.getxattr)
            fuse_reply_err(req, ENOSYS)
        }
        ops.listxattr = { req, _, _ in
            SessionContext.from(req).counters.count(.listxattr)
            fuse_reply_err(req, ENOSYS)
        }
        ops.access = { req, _, _ in
            SessionContext.from(req).counters.count(.access)
            fuse_reply_err(req, ENOSYS)
        }
        ops.forget = { req, _, _ in
            SessionContext.from(req).counters.count(.forget)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, _ in
            SessionContext.from(req).counters.count(.forget, UInt64(count))
            fuse_reply_none(req)
        }
        return ops
    }

    static func bytes(of name: UnsafePointer<CChar>?) -> [UInt8] {
        guard let name else { return [] }
        // SAFETY: the kernel's name is NUL-terminated and valid for the callback.
        let len = strlen(name)
        return name.withMemoryRebound(to: UInt8.self, capacity: len) { Array(UnsafeBufferPointer(start: $0, count: len)) }
    }

    static func errnoOf(_ error: Error) -> Int32 { (error as? FuseError)?.errno ?? EIO }

    /// Adds one directory entry: `encode(buffer, room, name)` writes it with fuse_add_direntry[_plus]
    /// and returns its size (larger than `room` when it does not fit; nothing is written then).
    typealias AddEntry = (ArraySlice<UInt8>, (UnsafeMutablePointer<CChar>, Int, UnsafePointer<CChar>) -> Int) -> Bool

    /// Fills a reply buffer of `size` bytes with the entries `body` adds, then sends it.
    static func replyDirectory(_ req: fuse_req_t?, _ size: Int, _ body: (AddEntry) throws -> Void) {
        var buf = [CChar](repeating: 0, count: size)
        var used = 0
        do {
            try body { name, encode in
                var cname = Array(name)
                cname.append(0)
                // SAFETY: the encoder writes at most `size - used` bytes at buf[used...], and only
                // measures when the entry does not fit; `cname` is a NUL-terminated local copy.
                let need = buf.withUnsafeMutableBufferPointer { b in
                    cname.withUnsafeBufferPointer { n in
                        n.baseAddress!.withMemoryRebound(to: CChar.self, capacity: n.count) { np in
                            encode(b.baseAddress! + used, size - used, np)
                        }
                    }
                }
                if need > size - used { return false }
                used += need
                return true
            }
            // SAFETY: the first `used` bytes of the local buffer hold the entries.
            buf.withUnsafeBufferPointer { b in _ = fuse_reply_buf(req, b.baseAddress, used) }
        } catch {
            fuse_reply_err(req, errnoOf(error))
        }
    }

    static func statOf(_ a: FuseAttr) -> stat {
        var st = stat()
        st.st_ino = UInt(a.ino)
        st.st_mode = a.mode
        st.st_nlink = UInt(a.nlink)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_size = Int(a.size)
        st.st_blksize = 4096
        st.st_blocks = Int((a.size + 511) / 512)
        let ts = timespec(tv_sec: Int(a.mtimeNs / 1_000_000_000), tv_nsec: Int(a.mtimeNs % 1_000_000_000))
        st.st_mtim = ts
        st.st_atim = ts
        st.st_ctim = ts
        return st
    }

    static func entryParam(_ a: FuseAttr, _ config: FuseConfig) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = a.ino
        e.generation = 1
        e.attr = statOf(a)
        e.attr_timeout = config.attrTimeout
        e.entry_timeout = config.entryTimeout
        return e
    }
}
