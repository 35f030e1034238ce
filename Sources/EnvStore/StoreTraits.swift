// What a store declares about itself, so callers decide on facts rather than on its type (a
// mount that reads ahead only where a round trip is worth hiding, a publish that refuses a store
// that takes no writes). A wrapper store forwards the traits of the store it wraps.

/// Facts about a store that callers plan around.
public struct StoreTraits: Sendable, Equatable, CustomStringConvertible {
    /// What one request costs.
    public enum Latency: Sendable, Equatable {
        /// A local disk or memory: a request costs microseconds, nothing to hide by fetching ahead.
        case local
        /// Across a network: every request costs a round trip, worth overlapping and fetching ahead.
        case remote
    }

    /// What one request costs (see `Latency`).
    public var latency: Latency
    /// `list(prefix:)` works (plain HTTP has no listing).
    public var listable: Bool
    /// `put` is accepted (publish, profiles, revisions, gc).
    public var writable: Bool

    public init(latency: Latency, listable: Bool, writable: Bool) {
        self.latency = latency
        self.listable = listable
        self.writable = writable
    }

    public var description: String {
        "\(latency == .local ? "local" : "remote"), \(listable ? "listable" : "not listable"), \(writable ? "writable" : "read-only")"
    }
}
