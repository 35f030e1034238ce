// FuseKit: a thin adapter from libfuse3's lowlevel API to a Swift protocol. It only
// translates: each callback decodes its arguments, calls the filesystem, and replies with the
// result or the errno. All pointer handling for FUSE lives in this target.
import Glibc

/// Attributes as the kernel sees them; `mode` includes the file type bits.
public struct FuseAttr: Sendable {
    public var ino: UInt64
    public var mode: UInt32
    public var nlink: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var mtimeNs: Int64

    public init(ino: UInt64, mode: UInt32, nlink: UInt32, uid: UInt32, gid: UInt32, size: UInt64, mtimeNs: Int64) {
        self.ino = ino; self.mode = mode; self.nlink = nlink; self.uid = uid; self.gid = gid
        self.size = size; self.mtimeNs = mtimeNs
    }
}

/// Data for a read reply: bytes, or a range of a file descriptor that FuseKit splices and then closes.
public enum FuseReadReply {
    case bytes([UInt8])
    case file(fd: Int32, offset: UInt64, length: Int)
}

/// An errno for the kernel.
public struct FuseError: Error, Sendable {
    public let errno: Int32
    public init(_ errno: Int32) { self.errno = errno }
}

public struct FuseStatfs: Sendable {
    public var blocks: UInt64
    public var files: UInt64
    public init(blocks: UInt64, files: UInt64) { self.blocks = blocks; self.files = files }
}

/// What a read-only filesystem implements to be mounted by `FuseSession`. Errors thrown are
/// `FuseError`; anything else becomes EIO.
public protocol FuseFilesystem: AnyObject, Sendable {
    func lookup(parent: UInt64, name: [UInt8]) throws -> FuseAttr
    func getattr(ino: UInt64) throws -> FuseAttr
    func readlink(ino: UInt64) throws -> [UInt8]
    func open(ino: UInt64, flags: Int32) throws
    func read(ino: UInt64, offset: UInt64, size: Int) throws -> FuseReadReply
    func opendir(ino: UInt64) throws
    /// Calls `emit(name, ino, mode, nextOffset)` for entries from `offset`; stops when it returns false.
    func readdir(ino: UInt64, offset: Int, emit: (ArraySlice<UInt8>, UInt64, UInt32, Int) -> Bool) throws
    /// As readdir, with each entry's attributes (nil for `.` and `..`).
    func readdirplus(ino: UInt64, offset: Int, emit: (ArraySlice<UInt8>, UInt64, FuseAttr?, Int) -> Bool) throws
    func statfs() -> FuseStatfs
}
