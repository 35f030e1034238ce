// EnvPublish: source tree → chunks → manifest → ref, in that order, so a reader never sees a
// ref naming something that is not fully in the store. `publish()` runs four named stages:
//
//   walk            TreeWalker lists the tree in path order (the chunker's stream)
//   chunk + upload  Publisher+Upload: one thread reads and cuts the stream; a pool of workers
//                   hashes, compresses and uploads the chunks the store lacks
//   manifest        the chunk table (one record per distinct chunk), spans renumbered to it
//   commit          Publisher+Commit: manifest, then a revision record claims the next number
//                   and the ref moves to it by compare-and-swap (RevisionLog; `encodeRef` is
//                   where a signer hooks in)
//   profiles        Publisher+Profiles: the previous revision's profiles carried to the new one
import Glibc
import SysKit
import EnvFormat
import EnvStore

public struct PublishOptions: Sendable {
    public var env: String
    public var skipSpecial = false
    public var compressionLevel: Int32 = 4
    public var chunking = ChunkingParams.default
    /// Chunks hashed, compressed and uploaded at once.
    public var workers = 8
    /// Signs the ref (`--sign KEYFILE`); nil publishes an unsigned ref.
    public var signer: RefSigner?
    /// Turns a ref into the bytes written to `refs/<env>`; nil writes `Ref.encode()` as it is
    /// (a signed ref's encoding includes its signature lines).
    public var encodeRef: (@Sendable (Ref) throws -> [UInt8])?
    /// Also publish the venv's base interpreter under `.envmount-python/` (see BundledPython).
    public var withPython = false
    /// rsync-style exclude patterns (see ExcludeRules).
    public var excludes: [String] = []
    /// The source is this writable envmount mount: files its layer did not change are taken
    /// from the base revision unread (Publisher+Layer).
    public var layer: WritableMount?
    public init(env: String) { self.env = env }
}

public struct PublishProgress: Sendable {
    public var filesDone = 0
    public var filesTotal = 0
    public var bytesRead: UInt64 = 0
    public var bytesTotal: UInt64 = 0
    public var chunks = 0
    public var chunksUploaded = 0
    public var bytesUploaded: UInt64 = 0
    /// Files (and their bytes) taken unread from a writable mount's base revision.
    public var filesReused = 0
    public var bytesReused: UInt64 = 0
}

public struct PublishResult: Sendable {
    public var ref: Ref
    public var unchanged: Bool
    public var directories = 0, files = 0, symlinks = 0, hardlinks = 0, skipped = 0
    public var fileBytes: UInt64 = 0
    public var chunks = 0
    public var chunksUploaded = 0
    public var bytesUploaded: UInt64 = 0
    public var chunksReused = 0
    public var manifestBytes = 0
    public var excludedFiles = 0
    public var excludedBytes: UInt64 = 0
    /// The revision record written (nil when the tree was unchanged).
    public var record: RevisionRecord?
    public var seconds = 0.0
    /// Profiles of the previous revision carried to this one (Publisher+Profiles).
    public var carriedProfiles: [CarriedProfile] = []
    /// A writable mount's publish: the revision its layer was made over, and the files (and
    /// bytes) taken from it unread; `bytesRead` is what was read (all of `fileBytes` otherwise).
    public var baseRevision: UInt64?
    public var filesReused = 0
    public var bytesReused: UInt64 = 0
    public var bytesRead: UInt64 = 0
}

public final class Publisher: Sendable {
    let store: any ObjectStore
    let options: PublishOptions
    let warn: @Sendable (String) -> Void
    let progress: @Sendable (PublishProgress) -> Void

    public init(store: any ObjectStore, options: PublishOptions,
                warn: @escaping @Sendable (String) -> Void = { Console.error($0) },
                progress: @escaping @Sendable (PublishProgress) -> Void = { _ in }) {
        self.store = store
        self.options = options
        self.warn = warn
        self.progress = progress
    }

    public func publish(source: String) throws -> PublishResult {
        let start = ProcessControl.monotonicNs()
        let sourcePath = try checkedSource(source)
        let bundle = options.withPython ? try BundledPython.locate(source: sourcePath) : nil
        var walker = try walk(sourcePath, bundle: bundle)
        let known = try storeState()
        let reuse = try planLayerReuse(&walker, known: known)
        if let r = reuse, let p = known.previous, p.manifest != r.baseRef.manifest, r.layer.record.env == options.env {
            warn("envpublish: note: \(options.env) is at revision \(p.revision) in \(store.description); the layer \(r.layer.layerDir) was made over revision \(r.baseRef.revision), so the new revision is revision \(r.baseRef.revision) with this layer's changes")
        }
        var scanner = PrefixScanner(prefixes: reuse?.prefixes ?? Self.relocationPrefixes(sourcePath: sourcePath, bundle: bundle))
        var uploaded = try chunkAndUpload(walker, known: known, scanner: &scanner, reuse: reuse)
        let (encoded, table) = try buildManifest(walker, uploaded, sourcePath: sourcePath, scanner: scanner, bundle: bundle, reuse: reuse)
        try putManifest(encoded)
        if try gcRan(since: known.gcCompleted) {
            // A gc ran while this publish did: it may have deleted chunks this publish reused.
            // Upload again whatever is gone (the chunking is deterministic, so ids are the same).
            let now = try storeState()
            if !Set(table.map(\.id)).isSubset(of: now.present) {
                if let r = reuse, !uploaded.reusedIDs.isSubset(of: now.present) {
                    throw PublishError.store("a gc of \(store.description) removed chunks of revision \(r.baseRef.revision) that this publish takes unread; the ref was left unchanged; publish again (the files whose chunks are gone are then read)")
                }
                warn("envpublish: a gc ran during this publish and removed chunks it reuses; uploading them again")
                var rescan = PrefixScanner(prefixes: scanner.prefixes)
                let again = try chunkAndUpload(walker, known: now, scanner: &rescan, reuse: reuse)
                uploaded.chunksUploaded += again.chunksUploaded
                uploaded.bytesUploaded += again.bytesUploaded
                do { try store.sync() } catch { throw PublishError.store("\(error)") }
            }
        }

        let publishedAt = ProcessControl.wallClockSeconds()
        var result = PublishResult(ref: Ref(manifest: ChunkID.of(encoded), revision: 1, publishedAt: publishedAt),
                                   unchanged: false)
        result.directories = walker.counts.directories
        result.files = walker.counts.files
        result.symlinks = walker.counts.symlinks
        result.hardlinks = walker.counts.hardlinks
        result.skipped = walker.counts.skipped
        result.fileBytes = uploaded.bytesRead
        result.chunks = table.count
        result.chunksUploaded = uploaded.chunksUploaded
        result.bytesUploaded = uploaded.bytesUploaded
        result.chunksReused = table.count - uploaded.chunksUploaded
        result.manifestBytes = encoded.count
        result.excludedFiles = walker.excluded.files
        result.excludedBytes = walker.excluded.bytes
        result.baseRevision = reuse?.baseRef.revision
        result.filesReused = uploaded.filesReused
        result.bytesReused = uploaded.bytesReused
        result.bytesRead = uploaded.bytesRead - uploaded.bytesReused

        let template = recordTemplate(manifest: result.ref.manifest, publishedAt: publishedAt, sourcePath: sourcePath,
                                      walker: walker, table: table, uploaded: uploaded, reuse: reuse)
        try commit(manifest: encoded, table: table, previous: known.previous, template: template, result: &result)
        // Profiles come from the revision the tree was made from: a writable mount's base.
        let carryFrom = reuse.flatMap { $0.layer.record.env == options.env ? $0.baseRef : nil } ?? known.previous
        carryProfiles(previous: carryFrom, manifest: encoded, result: &result)
        result.seconds = Double(ProcessControl.monotonicNs() - start) / 1e9
        return result
    }

    // MARK: stages

    /// The source's real path; the environment name and the store are checked first, before
    /// anything is read.
    func checkedSource(_ source: String) throws -> String {
        guard Ref.isValidEnvName(options.env) else { throw PublishError.invalidEnvName(options.env) }
        guard store.isWritable else { throw PublishError.store(StoreError.readOnly(store: store.description).description) }
        do { return try FS.realpath(source) } catch { throw PublishError.unreadable(path: source, reason: "\(error)") }
    }

    /// Stage 1: every entry of the tree into a ManifestBuilder, regular files listed in path order.
    func walk(_ sourcePath: String, bundle: BundledPython?) throws -> TreeWalker {
        var walker = TreeWalker(skipSpecial: options.skipSpecial, excludes: try ExcludeRules(patterns: options.excludes), warn: warn)
        try walker.walk(root: sourcePath.pathBytes)
        if let b = bundle { try walker.walkBundle(b) }
        try store.createIfMissing()
        return walker
    }

    /// What the store already has: the current ref, its chunk listing, and the chunks' stored
    /// sizes (from the listing, or else the previous manifest), so reused chunks keep their
    /// compressed size in the new table.
    struct StoreState {
        var previous: Ref?
        var present: Set<ChunkID> = []
        var storedSize: [ChunkID: UInt32] = [:]
        /// `gc/completed` before the chunk listing (nil: none yet).
        var gcCompleted: [UInt8]?
    }

    func storeState() throws -> StoreState {
        var state = StoreState()
        state.gcCompleted = try? store.get(GCMarker.completed)
        do { state.previous = try Ref.decode(try store.get(Ref.objectKey(env: options.env))) } catch let e as StoreError where e.isNotFound {
            state.previous = nil
        }
        if let c = store as? any ConsistentStore {
            // One listing gives both: which chunks exist, and their compressed sizes.
            for o in try c.listDetailed(prefix: "chunks/") {
                guard let id = ChunkID(hex: String(o.key.split(separator: "/").last ?? "")) else { continue }
                state.present.insert(id)
                if o.size > 0 && o.size <= UInt64(UInt32.max) { state.storedSize[id] = UInt32(o.size) }
            }
        } else {
            for h in try store.listChunkIDs() { if let id = ChunkID(hex: h) { state.present.insert(id) } }
        }
        if let p = state.previous, state.storedSize.isEmpty, let m = try? Manifest.decode(try store.get(Ref.manifestKey(p.manifest))) {
            for c in m.chunks where c.storedSize > 0 { state.storedSize[c.id] = c.storedSize }
        }
        return state
    }

    /// Stage 3: one table entry per distinct chunk, spans renumbered to it, encoded.
    func buildManifest(_ walker: TreeWalker, _ up: UploadResult, sourcePath: String, scanner: PrefixScanner,
                       bundle: BundledPython?, reuse: LayerReuse? = nil) throws -> (encoded: [UInt8], table: [Manifest.ChunkRecord]) {
        var finalIndex: [ChunkID: UInt32] = [:]
        var table: [Manifest.ChunkRecord] = []
        var remap = [UInt32](repeating: 0, count: up.ids.count)
        for (k, id) in up.ids.enumerated() {
            if let f = finalIndex[id] { remap[k] = f; continue }
            let f = UInt32(table.count)
            finalIndex[id] = f
            remap[k] = f
            table.append(Manifest.ChunkRecord(id: id, rawSize: up.sizes[k], storedSize: up.storedSize[id] ?? 0))
        }
        var builder = up.builder
        for n in builder.nodes.indices where !builder.nodes[n].spans.isEmpty {
            builder.remapChunks(n) { $0 == Manifest.Span.zeros ? $0 : remap[Int($0)] }
        }
        let reused = reuse.map(Self.reusedRelocation) ?? (files: [], patches: [])
        let relocation = Relocation(prefixes: scanner.prefixes, files: scanner.files + reused.files,
                                    symlinks: Self.symlinkRecords(builder, prefixes: scanner.prefixes), patches: scanner.patches + reused.patches)
        var facts = pythonFacts(sourcePath, reuse: reuse) + Self.environmentFacts(scanner, builder, bundle: bundle)
        if let reuse { facts = reuse.merge(facts) }
        let metadata = facts.sorted { $0.key < $1.key }
        let manifest = try builder.build(chunking: options.chunking, sourcePath: sourcePath.pathBytes,
                                         metadata: metadata, chunks: table, relocation: relocation)
        return (try manifest.encode(), table)
    }

    /// `home` and `version` from a venv's pyvenv.cfg, when there is one.
    static func pythonFacts(_ source: String) -> [(key: String, value: String)] {
        var facts: [(key: String, value: String)] = [("envmount.format", "\(Manifest.formatVersion)")]
        guard let cfg = try? FS.readFile(source + "/pyvenv.cfg") else { return facts }
        for line in String(decoding: cfg, as: UTF8.self).split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: " \t") }
            guard kv.count == 2 else { continue }
            if kv[0] == "home" { facts.append(("python.home", kv[1])) }
            if kv[0] == "version" || kv[0] == "version_info" { facts.append(("python.version", kv[1])) }
        }
        return facts.sorted { $0.key < $1.key }
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = self[...]
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
