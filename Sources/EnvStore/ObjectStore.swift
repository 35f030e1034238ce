// EnvStore: where environments live. Every store holds the same layout of immutable objects:
//
//   chunks/<2 hex>/<64 hex>                  one zstd frame; the name is the SHA-256 of its content
//   manifests/<64 hex>                       a manifest (EnvFormat), named by the SHA-256 of its bytes
//   refs/<env>                               the current manifest of an environment, written last
//   profiles/<env>/<manifest hex>/<name>     recorded access profiles
//
// Stores are synchronous and thread-safe: callers are FUSE worker threads and publish workers,
// each blocking on its own request, so parallelism is the number of calling threads.

/// Why a store operation failed, naming the object and the store.
public enum StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The object does not exist (404 / ENOENT).
    case notFound(key: String, store: String)
    /// Credentials or permissions refused (401/403 / EACCES).
    case denied(key: String, store: String, detail: String)
    /// The store cannot be reached or failed transiently (5xx, reset, timeout, DNS); may succeed later.
    case unavailable(key: String, store: String, detail: String)
    /// The store does not accept writes (http stores).
    case readOnly(store: String)
    /// Anything else, with the underlying reason.
    case failed(key: String, store: String, detail: String)

    public var description: String {
        switch self {
        case let .notFound(key, store): return "\(store): object \(key) not found"
        case let .denied(key, store, detail): return "\(store): access to \(key) denied (check credentials and permissions): \(detail)"
        case let .unavailable(key, store, detail): return "\(store): \(key) unavailable: \(detail)"
        case let .readOnly(store): return "\(store) is read-only (publish to a directory or s3:// store)"
        case let .failed(key, store, detail): return key.isEmpty ? "\(store): \(detail)" : "\(store): \(key): \(detail)"
        }
    }

    public var isNotFound: Bool { if case .notFound = self { return true } else { return false } }
    public var isTransient: Bool { if case .unavailable = self { return true } else { return false } }
}

public protocol ObjectStore: Sendable {
    /// The store as a user wrote it (`/srv/envs`, `s3://bucket/prefix`), for messages.
    var description: String { get }
    /// What the store declares about itself: latency, listing, writes (see `StoreTraits`).
    var traits: StoreTraits { get }
    /// Whether the store itself, not an object in it, is known to be absent without a request:
    /// a directory store whose directory is missing. False when it exists or cannot be known cheaply.
    var isKnownAbsent: Bool { get }

    /// The whole object.
    func get(_ key: String) throws -> [UInt8]
    /// Writes an object so that no reader ever sees it partially written.
    func put(_ key: String, _ bytes: [UInt8]) throws
    /// Whether the object exists.
    func exists(_ key: String) throws -> Bool
    /// Every key under `prefix` (which ends with `/`), in no particular order.
    func list(prefix: String) throws -> [String]
    /// Makes every completed `put` durable. A publish calls it before writing the manifest and
    /// ref, so a crash can never leave a ref naming chunks that were lost.
    func sync() throws
    /// Creates the store itself for a first publish where it has to exist before objects are
    /// written to it (a directory store's directory); stores that exist by being named do nothing.
    func createIfMissing() throws
}

extension ObjectStore {
    public func sync() throws {}
    public func createIfMissing() throws {}
    public var isKnownAbsent: Bool { false }
    /// `put` is accepted (`traits.writable`).
    public var isWritable: Bool { traits.writable }
}

extension ObjectStore {
    /// Ids of the chunks the store already holds, from listings rather than a HEAD per chunk.
    public func listChunkIDs() throws -> Set<String> {
        var out = Set<String>()
        for key in try list(prefix: "chunks/") {
            if let slash = key.lastIndex(of: "/") { out.insert(String(key[key.index(after: slash)...])) }
        }
        return out
    }

    /// Names of the environments in the store.
    public func listEnvironments() throws -> [String] {
        try list(prefix: "refs/").map { String($0.dropFirst("refs/".count)) }.filter { !$0.contains("/") }.sorted()
    }
}
