import CKernels
import Glibc

extension FS {
    /// Sets owner and group without following a symlink (`lchown`).
    public static func lchown(_ path: PathBytes, uid: UInt32, gid: UInt32) throws {
        _ = try withCPath(path) { p in try valueOrErrno("lchown", path.pathString) { Glibc.lchown(p, uid, gid) } }
    }

    /// Sets an extended attribute without following a symlink (`lsetxattr`).
    public static func setxattr(_ path: PathBytes, name: String, value: [UInt8]) throws {
        _ = try withCPath(path) { p in
            // SAFETY: `value` is a local array that outlives the call; the kernel copies it.
            try value.withUnsafeBytes { v in
                try valueOrErrno("lsetxattr", path.pathString) { envmount_lsetxattr(p, name, v.baseAddress, UInt(v.count)) }
            }
        }
    }
}
