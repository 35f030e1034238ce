import Glibc

/// Filesystem-level failures; `errno` is the one place they become kernel error codes.
public enum FSError: Error, CustomStringConvertible, Sendable {
    case notFound
    case notDirectory
    case isDirectory
    case notSymlink
    case readOnly
    /// A chunk could not be fetched or failed verification: the read fails, the mount lives on.
    case io(String)

    public var errno: Int32 {
        switch self {
        case .notFound: return ENOENT
        case .notDirectory: return ENOTDIR
        case .isDirectory: return EISDIR
        case .notSymlink: return EINVAL
        case .readOnly: return EROFS
        case .io: return EIO
        }
    }

    public var description: String {
        switch self {
        case .notFound: return "not found"
        case .notDirectory: return "not a directory"
        case .isDirectory: return "is a directory"
        case .notSymlink: return "not a symlink"
        case .readOnly: return "read-only file system"
        case let .io(why): return why
        }
    }
}
