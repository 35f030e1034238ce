import Glibc
import CKernels

/// The parts of `struct stat` envmount uses.
public struct FileStat: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case regular, directory, symlink, fifo, socket, charDevice, blockDevice, unknown }
    public var kind: Kind
    public var mode: UInt32          // permission bits incl. setuid/setgid/sticky (07777)
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var mtimeNs: Int64
    public var atimeNs: Int64
    /// Status change time: moves on every write, chmod, chown and link, and cannot be set back.
    public var ctimeNs: Int64
    public var device: UInt64
    public var inode: UInt64
    public var links: UInt64
    public var blocks: UInt64

    /// The file type bits of an `st_mode`.
    static func kind(of mode: mode_t) -> Kind {
        switch mode & S_IFMT {
        case S_IFREG: .regular
        case S_IFDIR: .directory
        case S_IFLNK: .symlink
        case S_IFIFO: .fifo
        case S_IFSOCK: .socket
        case S_IFCHR: .charDevice
        case S_IFBLK: .blockDevice
        default: .unknown
        }
    }

    init(_ st: stat) {
        kind = Self.kind(of: st.st_mode)
        mode = UInt32(st.st_mode & 0o7777)
        uid = st.st_uid
        gid = st.st_gid
        size = UInt64(st.st_size)
        mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        atimeNs = Int64(st.st_atim.tv_sec) * 1_000_000_000 + Int64(st.st_atim.tv_nsec)
        ctimeNs = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        links = UInt64(st.st_nlink)
        blocks = UInt64(st.st_blocks)
    }
}

/// File-system calls on byte paths. Each wraps the libc call of the same name.
public enum FS {
    /// `O_NOATIME` for `open` (Linux): reads do not update the access time. Only the file's owner
    /// (or root) may use it; others get EPERM.
    public static var openNoAtime: Int32 { envmount_o_noatime() }

    public static func lstat(_ path: PathBytes) throws -> FileStat {
        var st = Glibc.stat()
        _ = try withCPath(path) { p in try valueOrErrno("lstat", path.pathString) { fstatat(AT_FDCWD, p, &st, AT_SYMLINK_NOFOLLOW) } }
        return FileStat(st)
    }

    public static func stat(_ path: PathBytes) throws -> FileStat {
        var st = Glibc.stat()
        _ = try withCPath(path) { p in try valueOrErrno("stat", path.pathString) { fstatat(AT_FDCWD, p, &st, 0) } }
        return FileStat(st)
    }

    public static func lstat(_ path: String) throws -> FileStat { try lstat(path.pathBytes) }
    public static func stat(_ path: String) throws -> FileStat { try stat(path.pathBytes) }

    public static func exists(_ path: String) -> Bool { (try? lstat(path)) != nil }

    public static func readlink(_ path: PathBytes) throws -> PathBytes {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        // SAFETY: readlink writes at most buf.count bytes into the local buffer.
        let n = try withCPath(path) { p in
            try buf.withUnsafeMutableBytes { raw in
                try valueOrErrno("readlink", path.pathString) {
                    Glibc.readlink(p, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
                }
            }
        }
        return Array(buf[0..<n])
    }

    /// Names in a directory, without `.` and `..`, in the order the file system returns them.
    public static func listDirectory(_ path: PathBytes) throws -> [PathBytes] {
        guard let dir = try withCPath(path, { p in Glibc.opendir(p) }) else {
            throw SystemError(errno: Glibc.errno, call: "opendir", path: path.pathString)
        }
        defer { Glibc.closedir(dir) }
        var names: [PathBytes] = []
        while true {
            Glibc.errno = 0
            guard let ent = Glibc.readdir(dir) else {
                if Glibc.errno != 0 { throw SystemError(errno: Glibc.errno, call: "readdir", path: path.pathString) }
                return names
            }
            // SAFETY: glibc packs dirents by d_reclen, so a record can end right after its name's NUL (at
            // the end of the mapped buffer); read d_name through a pointer up to the NUL only, never
            // `ent.pointee` (which copies the full 256-byte array and crashed on 100k-entry scans).
            let nameStart = UnsafeRawPointer(ent) + MemoryLayout<dirent>.offset(of: \dirent.d_name)!
            let name = PathBytes(UnsafeRawBufferPointer(start: nameStart, count: strlen(nameStart.assumingMemoryBound(to: CChar.self))))
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            names.append(name)
        }
    }

    public static func listDirectory(_ path: String) throws -> [String] {
        try listDirectory(path.pathBytes).map { $0.pathString }
    }

    public static func mkdir(_ path: PathBytes, mode: UInt32 = 0o755) throws {
        _ = try withCPath(path) { p in try valueOrErrno("mkdir", path.pathString) { Glibc.mkdir(p, mode) } }
    }

    /// Creates `path` and any missing parents; an existing directory is fine.
    public static func makeDirectories(_ path: String, mode: UInt32 = 0o755) throws {
        var cur = path.hasPrefix("/") ? "" : "."
        for comp in path.split(separator: "/") {
            cur += "/" + comp
            do { try mkdir(cur.pathBytes, mode: mode) } catch let e as SystemError where e.errno == EEXIST {
                if (try? stat(cur))?.kind != .directory { throw e }
            }
        }
    }

    public static func rename(_ from: PathBytes, _ to: PathBytes) throws {
        _ = try withCPath(from) { f in
            try withCPath(to) { t in try valueOrErrno("rename", to.pathString) { Glibc.rename(f, t) } }
        }
    }

    public static func rename(_ from: String, _ to: String) throws { try rename(from.pathBytes, to.pathBytes) }

    public static func unlink(_ path: PathBytes) throws {
        _ = try withCPath(path) { p in try valueOrErrno("unlink", path.pathString) { Glibc.unlink(p) } }
    }

    public static func unlink(_ path: String) throws { try unlink(path.pathBytes) }

    public static func rmdir(_ path: PathBytes) throws {
        _ = try withCPath(path) { p in try valueOrErrno("rmdir", path.pathString) { Glibc.rmdir(p) } }
    }

    /// Removes a tree without following symlinks; a missing path is fine.
    public static func removeTree(_ path: PathBytes) throws {
        guard let st = try? lstat(path) else { return }
        if st.kind == .directory {
            for name in try listDirectory(path) { try removeTree(path.appendingComponent(name)) }
            try rmdir(path)
        } else {
            try unlink(path)
        }
    }

    public static func removeTree(_ path: String) throws { try removeTree(path.pathBytes) }

    public static func symlink(target: PathBytes, at path: PathBytes) throws {
        _ = try withCPath(target) { t in
            try withCPath(path) { p in try valueOrErrno("symlink", path.pathString) { Glibc.symlink(t, p) } }
        }
    }

    public static func link(_ existing: PathBytes, _ new: PathBytes) throws {
        _ = try withCPath(existing) { e in
            try withCPath(new) { n in try valueOrErrno("link", new.pathString) { Glibc.link(e, n) } }
        }
    }

    public static func mkfifo(_ path: PathBytes, mode: UInt32 = 0o644) throws {
        _ = try withCPath(path) { p in try valueOrErrno("mkfifo", path.pathString) { Glibc.mkfifo(p, mode) } }
    }

    public static func chmod(_ path: PathBytes, _ mode: UInt32) throws {
        _ = try withCPath(path) { p in try valueOrErrno("chmod", path.pathString) { Glibc.chmod(p, mode) } }
    }

    /// Sets the modification (and access) time of `path` itself, not following symlinks.
    public static func setMtime(_ path: PathBytes, ns: Int64) throws {
        var ts = [timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000)),
                  timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))]
        _ = try withCPath(path) { p in
            try valueOrErrno("utimensat", path.pathString) { Glibc.utimensat(AT_FDCWD, p, &ts, AT_SYMLINK_NOFOLLOW) }
        }
    }

    /// Sets the access and modification times of `path` to now (`utimensat` with NULL times).
    public static func touch(_ path: String) throws {
        _ = try valueOrErrno("utimensat", path) { Glibc.utimensat(AT_FDCWD, path, nil, 0) }
    }

    /// Detaches a mount now (`umount2(MNT_DETACH)`); used on stale FUSE mounts.
    public static func lazyUnmount(_ path: String) throws {
        _ = try valueOrErrno("umount2", path) { envmount_umount_lazy(path) }
    }

    /// Unmounts now (`umount2(path, 0)`): EBUSY while files are open there.
    public static func unmount(_ path: String) throws {
        _ = try valueOrErrno("umount2", path) { envmount_umount(path) }
    }

    /// `mount(2)`: `source` on `target` as a file system of `type` with the option string `options`,
    /// nosuid and nodev (like a FUSE mount).
    public static func mount(source: String, target: String, type: String, options: String) throws {
        _ = try valueOrErrno("mount", target) { envmount_mount(source, target, type, options) }
    }

    public static func realpath(_ path: String) throws -> String {
        guard let r = Glibc.realpath(path, nil) else {
            throw SystemError(errno: Glibc.errno, call: "realpath", path: path)
        }
        defer { free(r) }
        return String(cString: r)
    }

    /// Whether nothing is mounted on `path`, from one statx (not the root of a mount), where
    /// the kernel says so: false also when it cannot tell (statx failed, as on a FUSE mount
    /// whose daemon is gone, or no STATX_ATTR_MOUNT_ROOT before Linux 5.8). Cheaper than
    /// reading /proc/self/mountinfo, which takes a few ms.
    public static func surelyNotMountRoot(_ path: String) -> Bool { envmount_is_mount_root(path) == 0 }

    /// The mount ID of the mount holding `path` (mountinfo's first field), from one statx;
    /// nil where statx cannot say (before Linux 5.8, or it failed).
    public static func mountID(_ path: String) -> Int? {
        let id = envmount_mount_id(path)
        return id >= 0 ? Int(id) : nil
    }

    /// `f_type` of the file system holding `path` (statfs).
    public static func fileSystemType(_ path: String) throws -> Int {
        var t = 0
        _ = try valueOrErrno("statfs", path) { envmount_statfs_type(path, &t) }
        return t
    }

    /// Free bytes for unprivileged users on the file system holding `path`.
    public static func freeBytes(_ path: String) throws -> UInt64 {
        var b: UInt64 = 0
        _ = try valueOrErrno("statvfs", path) { envmount_statvfs_avail(path, &b) }
        return b
    }

    /// Writes `bytes` to `path` atomically: a temporary file (beside it unless `temporary` names
    /// one on the same file system), fsync when `sync`, then rename. On failure the temporary is
    /// removed and `path` is untouched.
    public static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644, sync: Bool = true,
                                           temporary: String? = nil) throws {
        let tmp = temporary ?? path + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        // A name of our own making must be new; a caller's temporary may be reused after a crash.
        let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | (temporary == nil ? O_EXCL : O_TRUNC), mode: mode)
        var open = true
        do {
            try fd.writeAll(bytes)
            if sync { try fd.fsync() }
            open = false
            fd.close()
            try rename(tmp, path)
        } catch {
            // Close once only: after a failed rename the number may already be another thread's file.
            if open { fd.close() }
            try? unlink(tmp)
            throw error
        }
    }

    /// Flushes every dirty page of the file system holding `path` to disk (`syncfs`).
    public static func syncFileSystem(_ path: String) throws {
        let fd = try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY)
        defer { fd.close() }
        _ = try valueOrErrno("syncfs", path) { envmount_syncfs(fd.rawValue) }
    }

    public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        return try fd.readAll()
    }
}

/// The FUSE magic in statfs `f_type`.
public let fuseSuperMagic = 0x65735546
