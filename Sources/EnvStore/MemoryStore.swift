import Glibc
import Synchronization

/// An in-memory store for unit tests, with counters and fault switches.
public final class MemoryStore: ObjectStore {
    struct State {
        var objects: [String: [UInt8]] = [:]
        /// Unix seconds of each object's last put (`listDetailed`); tests may age objects.
        var modified: [String: Int64] = [:]
        var versions: [String: Int] = [:]
        var gets = 0
        var failNextPuts = 0
        var unavailable = false
        var getDelayMicroseconds: UInt32 = 0
        var getsInFlight = 0
        var gateClosed = false
        var getLog: [String] = []
    }

    let state = Mutex(State())
    public let description = "memory://"
    public let traits: StoreTraits

    /// `latency: .remote` makes the store stand in for a network store where that changes what
    /// callers do (read-ahead windows).
    public init(latency: StoreTraits.Latency = .local) {
        traits = StoreTraits(latency: latency, listable: true, writable: true)
    }

    public var getCount: Int { state.withLock { $0.gets } }
    public var keys: [String] { state.withLock { Array($0.objects.keys) } }

    /// The next `n` puts fail, as a full disk or a refused upload would.
    public func failPuts(_ n: Int) { state.withLock { $0.failNextPuts = n } }
    /// While set, every call fails as an unreachable store does.
    public func setUnavailable(_ v: Bool) { state.withLock { $0.unavailable = v } }
    /// Replaces an object's bytes behind the writer's back (to simulate corruption).
    public func overwrite(_ key: String, _ bytes: [UInt8]) { state.withLock { $0.objects[key] = bytes } }

    /// Every get takes this long (outside the lock, as a network round trip would).
    public func setGetDelay(microseconds: UInt32) { state.withLock { $0.getDelayMicroseconds = microseconds } }
    /// Gets started and not yet returned.
    public var getsInFlight: Int { state.withLock { $0.getsInFlight } }
    /// While closed, every get waits (after counting itself in flight) until it opens: a test
    /// can hold a fetch under way while it changes what is queued.
    public func setGate(closed: Bool) { state.withLock { $0.gateClosed = closed } }
    /// The keys of the gets that returned an object, in the order they did.
    public var getLog: [String] { state.withLock { $0.getLog } }

    public func get(_ key: String) throws -> [UInt8] {
        let delay = state.withLock { s -> UInt32 in
            s.getsInFlight += 1
            return s.getDelayMicroseconds
        }
        defer { state.withLock { $0.getsInFlight -= 1 } }
        if delay > 0 { usleep(delay) }
        while state.withLock({ $0.gateClosed }) { usleep(1_000) }
        return try state.withLock { s in
            if s.unavailable { throw StoreError.unavailable(key: key, store: description, detail: "store offline") }
            s.gets += 1
            guard let v = s.objects[key] else { throw StoreError.notFound(key: key, store: description) }
            s.getLog.append(key)
            return v
        }
    }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        try state.withLock { s in
            if s.unavailable { throw StoreError.unavailable(key: key, store: description, detail: "store offline") }
            if s.failNextPuts > 0 {
                s.failNextPuts -= 1
                throw StoreError.failed(key: key, store: description, detail: "injected put failure")
            }
            s.objects[key] = bytes
            s.modified[key] = Int64(time(nil))
            s.versions[key, default: 0] += 1
        }
    }

    public func exists(_ key: String) throws -> Bool {
        try state.withLock { s in
            if s.unavailable { throw StoreError.unavailable(key: key, store: description, detail: "store offline") }
            return s.objects[key] != nil
        }
    }

    public func list(prefix: String) throws -> [String] {
        try state.withLock { s in
            if s.unavailable { throw StoreError.unavailable(key: prefix, store: description, detail: "store offline") }
            return s.objects.keys.filter { $0.hasPrefix(prefix) }
        }
    }
}
