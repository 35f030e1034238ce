// What a store holds, read for `envmount ls`, `diff`, `envpublish gc` and the cost line: every
// environment's ref and revision records, the objects with their sizes and times, and (when
// asked) the chunk tables of the manifests the revisions name.
import Synchronization
import SysKit
import EnvFormat
import EnvStore

public struct StoreCatalog: Sendable {
    public struct Environment: Sendable {
        public var name: String
        public var current: Ref?
        /// Recorded revisions, ascending.
        public var revisions: [RevisionRecord]
    }

    public var environments: [Environment]
    /// Every object of the store's layout with size and time (nil for a store that cannot list
    /// with details).
    public var objects: [ObjectInfo]
    /// Chunk ids of each loaded manifest (only with `manifests: true`).
    public var chunkSets: [ChunkID: Set<ChunkID>] = [:]
    public var chunkSizes: [ChunkID: UInt64] = [:]

    public static let prefixes = ["refs/", "revisions/", "manifests/", "profiles/", "chunks/"]

    /// Reads the catalog; `env` limits the revisions read to one environment (objects are always
    /// listed whole, for the store's size).
    public static func load(_ store: any ObjectStore, env: String? = nil, manifests: Bool = false) throws -> StoreCatalog {
        guard let c = store as? any ConsistentStore else {
            throw PublishError.store("\(store.description) cannot be listed (an http(s) store has no listing); use its directory or s3:// URL")
        }
        let lists = try Parallel.map(prefixes, width: prefixes.count) { try c.listDetailed(prefix: $0) }
        let objects = lists.flatMap { $0 }
        var names = Set(objects.filter { $0.key.hasPrefix("refs/") }.map { String($0.key.dropFirst(5)) }.filter { !$0.contains("/") })
        for o in objects where o.key.hasPrefix("revisions/") {
            let parts = o.key.split(separator: "/")
            if parts.count == 3 { names.insert(String(parts[1])) }
        }
        if let env {
            guard names.contains(env) else {
                throw PublishError.store("no environment '\(env)' in \(store.description)"
                    + (names.isEmpty ? " (it holds none)" : " (it holds: \(names.sorted().joined(separator: ", ")))"))
            }
            names = [env]
        }
        var revisionKeys: [(env: String, key: String)] = []
        for o in objects where o.key.hasPrefix("revisions/") {
            let parts = o.key.split(separator: "/")
            if parts.count == 3, names.contains(String(parts[1])), RevisionRecord.revision(fromKey: o.key) != nil {
                revisionKeys.append((String(parts[1]), o.key))
            }
        }
        let records = try Parallel.map(revisionKeys.map(\.key), width: 16) { key -> RevisionRecord in
            do { return try RevisionRecord.decode(try store.get(key)) } catch let e as FormatError {
                throw PublishError.store("\(store.description): \(key) is damaged: \(e)")
            }
        }
        let sortedNames = names.sorted()
        let refs = try Parallel.map(sortedNames, width: 16) { name -> Ref? in
            do { return try Ref.decode(try store.get(Ref.objectKey(env: name))) } catch let e as StoreError where e.isNotFound {
                return nil
            }
        }
        var envs: [Environment] = []
        for (i, name) in sortedNames.enumerated() {
            envs.append(Environment(name: name, current: refs[i],
                                    revisions: records.filter { $0.env == name }.sorted { $0.revision < $1.revision }))
        }
        var catalog = StoreCatalog(environments: envs, objects: objects)
        for o in objects where o.key.hasPrefix("chunks/") {
            if let id = ChunkID(hex: String(o.key.split(separator: "/").last ?? "")) { catalog.chunkSizes[id] = o.size }
        }
        if manifests { try catalog.loadManifests(store) }
        return catalog
    }

    /// Manifest ids named by the revisions and current refs read.
    public var namedManifests: Set<ChunkID> {
        var s = Set<ChunkID>()
        for e in environments {
            if let c = e.current { s.insert(c.manifest) }
            for r in e.revisions { if let m = r.manifestID { s.insert(m) } }
        }
        return s
    }

    public mutating func loadManifests(_ store: any ObjectStore, only ids: Set<ChunkID>? = nil) throws {
        let want = Array((ids ?? namedManifests).subtracting(chunkSets.keys))
        let sets = try Parallel.map(want, width: 8) { id -> Set<ChunkID>? in
            let bytes: [UInt8]
            do { bytes = try store.get(Ref.manifestKey(id)) } catch let e as StoreError where e.isNotFound {
                return nil
            }
            guard ChunkID.of(bytes) == id else { throw PublishError.store("\(store.description): manifest \(id.hex) does not match its SHA-256") }
            let m: Manifest
            do { m = try Manifest.decode(bytes) } catch { throw PublishError.store("\(store.description): manifest \(id.hex) is invalid: \(error)") }
            return Set(m.chunks.map(\.id))
        }
        for (i, id) in want.enumerated() { if let s = sets[i] { chunkSets[id] = s } }
    }

    /// Compressed size of a set of chunks, as the store holds them.
    public func bytes(of chunks: Set<ChunkID>) -> UInt64 {
        chunks.reduce(0) { $0 + (chunkSizes[$1] ?? 0) }
    }

    /// For each (env, revision): the compressed bytes of the chunks that no other recorded
    /// revision (of any environment) uses: what dropping only that revision would free.
    public func uniqueBytes() -> [String: [UInt64: UInt64]] {
        var users: [ChunkID: Int] = [:]
        for e in environments {
            for r in e.revisions {
                guard let m = r.manifestID, let set = chunkSets[m] else { continue }
                for c in set { users[c, default: 0] += 1 }
            }
        }
        var out: [String: [UInt64: UInt64]] = [:]
        for e in environments {
            for r in e.revisions {
                guard let m = r.manifestID, let set = chunkSets[m] else { continue }
                out[e.name, default: [:]][r.revision] = set.reduce(0) { users[$1] == 1 ? $0 + (chunkSizes[$1] ?? 0) : $0 }
            }
        }
        return out
    }

    public var cost: StoreCost {
        var c = StoreCost()
        for o in objects {
            c.totalBytes += o.size
            c.objects += 1
            if o.key.hasPrefix("chunks/") { c.chunkBytes += o.size }
        }
        for e in environments {
            for r in e.revisions { c.wholeBytes += r.storedBytes }
            c.revisions += e.revisions.count
        }
        c.environments = environments.count
        return c
    }
}

/// A store's size, what dedup saved, and what it costs a month.
public struct StoreCost: Sendable {
    /// Cloudflare R2 Standard, $ per GB-month (the rate the seed's comparison uses).
    public static let defaultPricePerGB = 0.015
    /// AWS S3 Standard, first 50 TB, us-east-1.
    public static let s3StandardPricePerGB = 0.023

    public var totalBytes: UInt64 = 0
    public var chunkBytes: UInt64 = 0
    public var objects = 0
    /// Σ over recorded revisions of their chunks' compressed size: the store if every revision
    /// were kept whole.
    public var wholeBytes: UInt64 = 0
    public var revisions = 0
    public var environments = 0

    public init() {}

    public static func measure(_ store: any ObjectStore) throws -> StoreCost { try StoreCatalog.load(store).cost }

    /// Two decimals, or four below a cent (a small store is not free).
    static func dollars(_ v: Double) -> String {
        if v >= 0.01 || v == 0 { return String(format2: v) }
        let t = Int((v * 10_000).rounded())
        return "0.00" + (t < 10 ? "0" : "") + "\(t)"
    }

    public var dedupSaved: UInt64 { wholeBytes > chunkBytes ? wholeBytes - chunkBytes : 0 }

    public func monthly(pricePerGB: Double) -> Double { Double(totalBytes) / 1e9 * pricePerGB }

    public func summary(pricePerGB: Double) -> String {
        let dollars = monthly(pricePerGB: pricePerGB)
        var s = "store: \(formatDecimalBytes(totalBytes)) in \(objects) objects (\(environments) environments, \(revisions) revisions)"
        if wholeBytes > 0 {
            s += "; dedup saves \(formatDecimalBytes(dedupSaved)) against keeping every revision whole (\(formatDecimalBytes(wholeBytes)))"
        }
        s += "; $\(Self.dollars(dollars))/month at $\(pricePerGB)/GB-month"
        return s
    }
}

/// Decimal units (GB = 10^9 bytes), as storage is priced.
public func formatDecimalBytes(_ n: UInt64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var v = Double(n)
    var u = 0
    while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
    return u == 0 ? "\(n) B" : "\(String(format2: v)) \(units[u])"
}
