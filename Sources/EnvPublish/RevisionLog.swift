// Revisions and safe concurrent publish. A revision is committed in two steps:
//
//   1. claim: create `revisions/<env>/<n>` atomically (ConsistentStore.createExclusive). The
//      winner of number n is whoever created that object; a loser tries n+1, re-encoding (and
//      re-signing) its ref for the number it actually got. The record holds the exact ref bytes.
//   2. move: compare-and-swap `refs/<env>` from what it was to this revision, but only forward:
//      when the ref already names a higher revision (a later publish), it stays there.
//
// So two publishes at the same moment end as two revisions, n and n+1, both recorded, the
// later (n+1) current; neither reports a number it did not get. A store that cannot compare
// and swap uses CASFallback (exists-then-put), which narrows the race but cannot close it.
import Dispatch
import Glibc
import Synchronization
import SysKit
import EnvFormat
import EnvStore

public struct RevisionLog: Sendable {
    public let store: any ObjectStore
    public let env: String

    public init(store: any ObjectStore, env: String) {
        self.store = store
        self.env = env
    }

    /// Revision numbers recorded for the environment, ascending.
    public func numbers() throws -> [UInt64] {
        try store.list(prefix: RevisionRecord.prefix(env: env)).compactMap(RevisionRecord.revision(fromKey:)).sorted()
    }

    public func record(_ n: UInt64) throws -> RevisionRecord {
        let key = RevisionRecord.objectKey(env: env, revision: n)
        let bytes: [UInt8]
        do { bytes = try store.get(key) } catch let e as StoreError where e.isNotFound {
            let have = (try? numbers()) ?? []
            throw PublishError.store("\(env) has no revision \(n) in \(store.description)"
                + (have.isEmpty ? " (it records none)" : " (recorded: \(Self.describe(have)))"))
        }
        do { return try RevisionRecord.decode(bytes) } catch {
            throw PublishError.store("\(store.description): \(key) is damaged: \(error)")
        }
    }

    /// Every recorded revision, ascending; fetched in parallel.
    public func records() throws -> [RevisionRecord] {
        let ns = try numbers()
        return try Parallel.map(ns, width: 16) { try record($0) }
    }

    /// "1-4, 7".
    static func describe(_ ns: [UInt64]) -> String {
        var parts: [String] = []
        var i = 0
        while i < ns.count {
            var j = i
            while j + 1 < ns.count && ns[j + 1] == ns[j] + 1 { j += 1 }
            parts.append(i == j ? "\(ns[i])" : "\(ns[i])-\(ns[j])")
            i = j + 1
        }
        return parts.joined(separator: ", ")
    }

    /// Claims the next free revision number for `template` (its manifest, facts and packages),
    /// records it, then moves the ref forward to it. Returns the record as stored.
    public func commit(_ template: RevisionRecord, after previous: Ref?,
                       encodeRef: (Ref) throws -> [UInt8]) throws -> RevisionRecord {
        guard let manifest = template.manifestID else { throw PublishError.store("invalid manifest id \(template.manifest)") }
        var n = max(previous?.revision ?? 0, (try numbers()).last ?? 0) + 1
        var record = template
        var claimed = false
        for _ in 0..<10_000 {
            let ref = Ref(manifest: manifest, revision: n, publishedAt: template.publishedAt)
            record.revision = n
            record.ref = String(decoding: try encodeRef(ref), as: UTF8.self)
            let bytes = try record.encode()
            let key = RevisionRecord.objectKey(env: env, revision: n)
            if try CASFallback.createExclusive(store, key, bytes) { claimed = true; break }
            // Our own write whose answer was lost (a retried request) counts as ours.
            if let there = try? store.get(key), there == bytes { claimed = true; break }
            n += 1
        }
        guard claimed else { throw PublishError.store("could not claim a revision number for \(env) in \(store.description)") }
        try moveRef(to: record)
        return record
    }

    /// Compare-and-swap of `refs/<env>`, forward only.
    func moveRef(to record: RevisionRecord) throws {
        let key = Ref.objectKey(env: env)
        let bytes = record.refBytes
        guard let c = store as? any ConsistentStore else {
            if let cur = try? Ref.decode(try store.get(key)), cur.revision >= record.revision { return }
            try store.put(key, bytes)
            return
        }
        var backoff: UInt32 = 5_000
        for _ in 0..<1_000 {
            let cur = try c.getVersioned(key)
            if let cur, let r = try? Ref.decode(cur.bytes), r.revision >= record.revision { return }
            if try c.putIfVersion(key, bytes, expected: cur?.version) { return }
            usleep(UInt32.random(in: backoff / 2...backoff))
            backoff = min(backoff * 2, 500_000)
        }
        throw PublishError.store("\(store.description): \(key) kept changing; revision \(record.revision) is recorded but not current")
    }
}

/// Runs `body` over `items` on up to `width` threads, results in input order.
enum Parallel {
    static func map<T: Sendable, R: Sendable>(_ items: [T], width: Int, _ body: @escaping @Sendable (T) throws -> R) throws -> [R] {
        if items.count <= 1 { return try items.map(body) }
        let slots = Mutex<[Result<R, any Error>?]>(Array(repeating: nil, count: items.count))
        let w = min(width, items.count)
        DispatchQueue.concurrentPerform(iterations: w) { start in
            var i = start
            while i < items.count {
                let r = Result { try body(items[i]) }
                slots.withLock { $0[i] = r }
                i += w
            }
        }
        return try slots.withLock { s in try s.map { try $0!.get() } }
    }
}
