// SysKit is the one Swift layer that calls libc, libzstd and libcrypto through pointers. Every
// other target works with Swift values ([UInt8], String) and typed errors from here.
import Glibc

/// A failed system call: which call, on what, and the errno it returned.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    public let errno: Int32
    public let call: String
    public let path: String

    public init(errno: Int32, call: String, path: String = "") {
        self.errno = errno
        self.call = call
        self.path = path
    }

    public var message: String { String(cString: strerror(errno)) }

    public var description: String {
        path.isEmpty ? "\(call): \(message)" : "\(call) \(path): \(message)"
    }
}

/// Runs a libc call that returns -1 and sets errno on failure, retrying on EINTR.
@inline(__always)
func valueOrErrno<T: FixedWidthInteger>(_ call: String, _ path: @autoclosure () -> String = "",
                                        _ body: () -> T) throws -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        throw SystemError(errno: e, call: call, path: path())
    }
}

/// Paths are byte strings: Linux allows any byte but `/` and NUL in a name, so names that are
/// not valid UTF-8 must survive a publish and a mount unchanged.
public typealias PathBytes = [UInt8]

extension Array where Element == UInt8 {
    /// A display form of a byte path: invalid UTF-8 is shown with replacement characters.
    public var pathString: String { String(decoding: self, as: UTF8.self) }

    public func appendingComponent(_ name: [UInt8]) -> [UInt8] {
        var p = self
        if p.last != UInt8(ascii: "/") { p.append(UInt8(ascii: "/")) }
        p.append(contentsOf: name)
        return p
    }
}

extension String {
    public var pathBytes: PathBytes { Array(utf8) }
}

/// Calls `body` with a NUL-terminated copy of `path`.
@inline(__always)
func withCPath<R>(_ path: PathBytes, _ body: (UnsafePointer<CChar>) throws -> R) throws -> R {
    var z = path
    z.append(0)
    // SAFETY: `z` is a local NUL-terminated copy that outlives the call.
    return try z.withUnsafeBufferPointer { (buf) throws -> R in
        try buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { (p) throws -> R in
            try body(p)
        }
    }
}
