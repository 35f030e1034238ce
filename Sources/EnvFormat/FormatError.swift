/// Why a manifest, ref or chunk was refused.
public struct FormatError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
