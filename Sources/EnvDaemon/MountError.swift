/// A mount, or a request to a mount's daemon, that cannot be done: one line for the user.
public struct MountError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The daemon stopped with a non-zero status, already reported on its own.
public struct DaemonExit: Error, Sendable {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
}
