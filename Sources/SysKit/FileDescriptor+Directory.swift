import CKernels
import Glibc

/// What `fstatat` said of one name in a directory (`FileDescriptor.statNames`).
public struct NameStat: Sendable, Equatable {
    /// 0, or the errno of the name's `fstatat` (ENOENT: not there).
    public var errno: Int32
    public var kind: FileStat.Kind
    public var mode: UInt32          // permission bits (07777)
    public var size: UInt64
    public var mtimeNs: Int64
    public var ctimeNs: Int64
    public var inode: UInt64
}

/// Walking a tree one path component per call: a directory is opened once (O_PATH) and the
/// names in it are looked up relative to it, so the kernel never walks a whole path again and
/// no path is built per file.
extension FileDescriptor {
    /// Opens directory `path` as an O_PATH descriptor for `*at` calls; a symlink as its last
    /// component is refused (ENOTDIR). The corresponding C call is `open(O_PATH|O_DIRECTORY|O_NOFOLLOW)`.
    public static func openDirectory(_ path: PathBytes) throws -> FileDescriptor {
        FileDescriptor(rawValue: try withCPath(path) { p in
            try valueOrErrno("open", path.pathString) { envmount_open_directory(p) }
        })
    }

    /// Opens the directory at `relative` below this O_PATH directory, following no symlink on
    /// the way and never leaving it (`openat2` with RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH):
    /// a symlink anywhere on the way fails with ELOOP or ENOTDIR.
    public func openDirectory(beneath relative: PathBytes) throws -> FileDescriptor {
        FileDescriptor(rawValue: try withCPath(relative) { p in
            try valueOrErrno("openat2", relative.pathString) { envmount_open_directory_beneath(rawValue, p) }
        })
    }

    /// What `openDirectory(beneath:)` falls back to where the kernel has no `openat2`: one
    /// `openat(O_NOFOLLOW)` per component (internal: tests call it to cover that path).
    func openDirectoryByComponents(beneath relative: PathBytes) throws -> FileDescriptor {
        FileDescriptor(rawValue: try withCPath(relative) { p in
            try valueOrErrno("openat", relative.pathString) { envmount_open_directory_components(rawValue, p) }
        })
    }

    /// `fstatat(self, name, AT_SYMLINK_NOFOLLOW)` of each name in this directory: name k is
    /// `names[starts[k] ..< starts[k] + lengths[k]]` (one path component). One call into C for
    /// the whole directory.
    public func statNames(_ names: [UInt8], starts: [UInt32], lengths: [UInt16]) -> [NameStat] {
        precondition(starts.count == lengths.count)
        for k in starts.indices { precondition(Int(starts[k]) + Int(lengths[k]) <= names.count, "name \(k) lies outside the buffer") }
        var raw = [envmount_name_stat](repeating: envmount_name_stat(), count: starts.count)
        // SAFETY: every name range was checked against `names` above; `raw` holds `count` records.
        names.withUnsafeBufferPointer { n in
            starts.withUnsafeBufferPointer { s in
                lengths.withUnsafeBufferPointer { l in
                    raw.withUnsafeMutableBufferPointer { out in
                        envmount_stat_names(rawValue, n.baseAddress, s.baseAddress, l.baseAddress, starts.count, out.baseAddress)
                    }
                }
            }
        }
        return raw.map { r in
            NameStat(errno: r.error, kind: r.error == 0 ? FileStat.kind(of: mode_t(r.mode)) : .unknown, mode: r.mode & 0o7777,
                     size: r.size, mtimeNs: r.mtime_ns, ctimeNs: r.ctime_ns, inode: r.inode)
        }
    }
}

extension NameStat {
    /// The same facts from an `lstat`.
    public init(_ st: FileStat) {
        self.init(errno: 0, kind: st.kind, mode: st.mode, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, inode: st.inode)
    }
}
