// `envpublish gc`: decides which revisions to keep per environment, then deletes what no kept
// revision needs. Safe beside a running publish:
//
// - Nothing younger than the grace period (default one hour) is deleted, so the chunks a live
//   publish has uploaded but not yet committed survive.
// - Every manifest younger than the grace period counts as kept, with its chunks: a publish
//   writes its manifest before it claims a revision.
// - Before deleting, gc writes `gc/running` and lists the manifests again, so a manifest written
//   after its first listing keeps its chunks too. A publish that finds `gc/running` after
//   writing its manifest waits for it to go; one that sees `gc/completed` change while it ran
//   checks that every chunk it reused is still there and uploads again whatever is missing,
//   before it moves the ref (Publisher.publish).
//
// Deletion order: revision records, profiles, manifests, chunks, so a crash midway never leaves
// a record naming a deleted manifest, or a manifest naming deleted chunks that a kept record needs.
import Glibc
import SysKit
import EnvFormat
import EnvStore

public struct GCOptions: Sendable {
    /// Keep the N highest revisions of each environment.
    public var keepLast: Int?
    /// Keep revisions published within this many seconds.
    public var keepWithin: Int64?
    public var dryRun = false
    /// Objects younger than this many seconds are never deleted.
    public var grace: Int64 = 3600
    /// Unix seconds, for tests.
    public var now: Int64 = ProcessControl.wallClockSeconds()

    public init() {}
}

public struct GCReport: Sendable {
    public var kept: [String: [UInt64]] = [:]
    public var dropped: [String: [UInt64]] = [:]
    public var deleted: [String: (count: Int, bytes: UInt64)] = [:]
    /// Unreferenced objects left alone because they are younger than the grace period.
    public var young = (count: 0, bytes: UInt64(0))
    public var requests = 0
    public var seconds = 0.0
    public var freedBytes: UInt64 { deleted.values.reduce(0) { $0 + $1.bytes } }
    public var freedObjects: Int { deleted.values.reduce(0) { $0 + $1.count } }
}

public enum GCMarker {
    public static let running = "gc/running"
    public static let completed = "gc/completed"
    /// A `gc/running` older than this is a gc that died; publishes stop waiting for it.
    public static let staleAfter: Int64 = 900
}

public struct GarbageCollector: Sendable {
    let store: any ConsistentStore
    let options: GCOptions
    let log: @Sendable (String) -> Void

    public init(store: any ObjectStore, options: GCOptions, log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        guard let c = store as? any ConsistentStore, store.isWritable else {
            throw PublishError.store("\(store.description) cannot be garbage-collected (it must be a directory or s3:// store)")
        }
        self.store = c
        self.options = options
        self.log = log
    }

    public func run() throws -> GCReport {
        let start = ProcessControl.monotonicNs()
        var report = GCReport()
        var catalog = try StoreCatalog.load(store)
        let cutoff = options.now - options.grace

        // Which revisions stay.
        var keptRecords: [RevisionRecord] = []
        var droppedRecords: [RevisionRecord] = []
        for e in catalog.environments {
            let ordered = e.revisions.sorted { $0.revision > $1.revision }
            for (i, r) in ordered.enumerated() {
                var keep = options.keepLast == nil && options.keepWithin == nil
                if let n = options.keepLast, i < n { keep = true }
                if let w = options.keepWithin, r.publishedAt >= options.now - w { keep = true }
                if let c = e.current, c.revision == r.revision || c.manifest == r.manifestID { keep = true }
                if keep { keptRecords.append(r) } else { droppedRecords.append(r) }
            }
            report.kept[e.name] = keptRecords.filter { $0.env == e.name }.map(\.revision).sorted()
            report.dropped[e.name] = droppedRecords.filter { $0.env == e.name }.map(\.revision).sorted()
        }

        // Manifests needed: kept revisions', current refs', and every young one.
        func needed(_ objects: [ObjectInfo]) -> Set<ChunkID> {
            var s = Set(keptRecords.compactMap(\.manifestID))
            for e in catalog.environments { if let c = e.current { s.insert(c.manifest) } }
            for o in objects where o.key.hasPrefix("manifests/") && o.modified > cutoff {
                if let id = ChunkID(hex: String(o.key.dropFirst("manifests/".count))) { s.insert(id) }
            }
            return s
        }
        var neededManifests = needed(catalog.objects)
        try catalog.loadManifests(store, only: neededManifests)
        if let missing = neededManifests.first(where: { catalog.chunkSets[$0] == nil }) {
            throw PublishError.store("manifest \(missing.hex) is needed by a kept revision but is missing from \(store.description); "
                + "nothing was deleted (the store is damaged: publish again to repair)")
        }

        if !options.dryRun {
            try store.put(GCMarker.running, Array("gc by \(PublisherIdentity.user)@\(PublisherIdentity.host) pid \(ProcessControl.pid) at \(options.now)\n".utf8))
            // A publish may have written a manifest since the first listing: its chunks stay.
            let again = try store.listDetailed(prefix: "manifests/")
            let fresh = Set(again.compactMap { ChunkID(hex: String($0.key.dropFirst("manifests/".count))) })
                .subtracting(Set(catalog.objects.compactMap { $0.key.hasPrefix("manifests/") ? ChunkID(hex: String($0.key.dropFirst(10))) : nil }))
            neededManifests.formUnion(fresh)
            try catalog.loadManifests(store, only: neededManifests)
        }
        defer { if !options.dryRun { _ = try? store.delete([GCMarker.running]) } }

        var liveChunks = Set<ChunkID>()
        for m in neededManifests { liveChunks.formUnion(catalog.chunkSets[m] ?? []) }
        let keptRevisionKeys = Set(keptRecords.map { RevisionRecord.objectKey(env: $0.env, revision: $0.revision) })

        // What goes, by kind, in deletion order.
        var plan: [(kind: String, objects: [ObjectInfo])] = [("revision records", []), ("profiles", []), ("manifests", []), ("chunks", [])]
        for o in catalog.objects {
            let kind: Int
            if o.key.hasPrefix("revisions/") {
                guard !keptRevisionKeys.contains(o.key), RevisionRecord.revision(fromKey: o.key) != nil else { continue }
                kind = 0
            } else if o.key.hasPrefix("profiles/") {
                let parts = o.key.split(separator: "/")
                guard parts.count >= 4, let m = ChunkID(hex: String(parts[2])), !neededManifests.contains(m) else { continue }
                kind = 1
            } else if o.key.hasPrefix("manifests/") {
                guard let m = ChunkID(hex: String(o.key.dropFirst("manifests/".count))), !neededManifests.contains(m) else { continue }
                kind = 2
            } else if o.key.hasPrefix("chunks/") {
                guard let c = ChunkID(hex: String(o.key.split(separator: "/").last ?? "")), !liveChunks.contains(c) else { continue }
                kind = 3
            } else {
                continue
            }
            if o.modified > cutoff {
                report.young.count += 1
                report.young.bytes += o.size
                continue
            }
            plan[kind].objects.append(o)
        }
        for (kind, objects) in plan where !objects.isEmpty {
            report.deleted[kind] = (objects.count, objects.reduce(0) { $0 + $1.size })
            guard !options.dryRun else { continue }
            log("deleting \(objects.count) \(kind) (\(formatDecimalBytes(report.deleted[kind]!.bytes)))")
            report.requests += try store.delete(objects.map(\.key))
        }
        if !options.dryRun {
            try store.put(GCMarker.completed, Array("\(options.now) \(ProcessControl.pid) \(UInt64.random(in: 0...UInt64.max))\n".utf8))
        }
        report.seconds = Double(ProcessControl.monotonicNs() - start) / 1e9
        return report
    }
}
