import EnvCache
import EnvFetch
import EnvFS
import EnvFormat
import EnvStore
import FoundationEssentials
import FuseKit
import Glibc
import Synchronization
import SysKit

/// What a running mount is, and the answers to its control requests.
final class MountService: Sendable {
    let mountpoint: String
    let env: String
    let ref: Ref
    let manifest: Manifest
    let store: any ObjectStore
    let cache: ChunkCache
    let offline: Bool
    let signedBy: String?
    let fs: EnvFilesystem
    let fetcher: ChunkFetcher
    let pool: FetchPool
    let recorder: AccessRecorder
    let fuseOps: FuseOpCounters
    let chunkIndex: [ChunkID: UInt32]
    private let controlServer = Mutex<ControlServer?>(nil)
    private let native = Mutex<NativeSummary?>(nil)
    private let primer = Mutex<KernelPrimer.Stats?>(nil)
    private let nativeReadAhead = Mutex<(profile: String, stats: NativeReadAhead.Stats)?>(nil)
    private let treeWarmer = Mutex<NativeReadAhead?>(nil)

    init(mountpoint: String, opened: OpenedEnvironment, store: any ObjectStore, cache: ChunkCache,
         fs: EnvFilesystem, fetcher: ChunkFetcher, pool: FetchPool, recorder: AccessRecorder,
         fuseOps: FuseOpCounters = FuseOpCounters()) {
        self.mountpoint = mountpoint
        self.env = opened.env
        self.ref = opened.ref
        self.manifest = opened.manifest
        self.offline = opened.offline
        self.signedBy = opened.signedBy?.key.keyID
        self.store = store
        self.cache = cache
        self.fs = fs
        self.fetcher = fetcher
        self.pool = pool
        self.recorder = recorder
        self.fuseOps = fuseOps
        var idx: [ChunkID: UInt32] = [:]
        for (i, c) in opened.manifest.chunks.enumerated() { idx[c.id] = UInt32(i) }
        chunkIndex = idx
    }

    /// What the kernel serves natively at this mount (nil: everything goes through FUSE).
    func setNative(_ summary: NativeSummary?) { native.withLock { $0 = summary } }
    func setPrimer(_ stats: KernelPrimer.Stats) { primer.withLock { $0 = stats } }
    /// A mount served from a complete tree warms the page cache from it (`warm`).
    func setTreeWarmer(_ warmer: NativeReadAhead) { treeWarmer.withLock { $0 = warmer } }

    /// A warm job: chunks fetched into the cache, or on a mount served from a complete tree (every
    /// chunk on local disk already), the tree's files of those chunks read into the page cache.
    func warm(label: String, chunks: [UInt32]) -> FetchJob {
        guard let warmer = treeWarmer.withLock({ $0 }) else { return pool.submit(label: label, chunks: chunks) }
        // Counted in the files' bytes (the chunks' raw size), which is what the page cache holds.
        let size: @Sendable (UInt32) -> UInt64 = { [manifest] in UInt64(manifest.chunks[Int($0)].rawSize) }
        let job = pool.track(label: "\(label) (page cache)", chunks: chunks, size: size)
        warmer.warm(chunks: chunks, job: job, bytes: size, limit: NativeReadAhead.defaultLimit())
        return job
    }

    func setNativeReadAhead(profile: String, _ stats: NativeReadAhead.Stats?) {
        nativeReadAhead.withLock { $0 = stats.map { (profile, $0) } }
    }

    /// Serves control requests on the mount's socket until `stopControlSocket`.
    func startControlSocket() throws {
        try ControlPaths.prepareDirectory()
        let server = try ControlServer(path: ControlPaths.socket(for: mountpoint)) { [self] in handle($0) }
        controlServer.withLock { $0 = server }
    }

    func stopControlSocket() { controlServer.withLock { $0?.stop() } }

    func handle(_ req: ControlRequest) -> ControlReply {
        do {
            switch req {
            case .status:
                return .status(status())
            case let .warm(paths, label):
                let (chunks, missing) = chunksOf(paths: paths)
                return .jobs([Self.info(warm(label: label, chunks: chunks))], missing: missing)
            case .warmAll:
                return .jobs([Self.info(warm(label: "all", chunks: (0..<UInt32(manifest.chunks.count)).map { $0 }))], missing: 0)
            case let .warmProfile(name):
                if treeWarmer.withLock({ $0 }) != nil {
                    return .jobs([Self.info(warm(label: "profile \(name)", chunks: try profileChunks(name)))], missing: 0)
                }
                return .jobs([Self.info(try warmProfile(name))], missing: 0)
            case let .jobs(ids):
                let wanted = Set(ids)
                return .jobs(pool.jobs.filter { wanted.isEmpty || wanted.contains($0.id) }.map(Self.info), missing: 0)
            case let .saveProfile(name):
                let (key, n) = try saveProfile(name)
                return .profileSaved(key: key, chunks: n)
            }
        } catch {
            return .failed("\(error)")
        }
    }

    static func info(_ j: FetchJob) -> JobInfo {
        JobInfo(id: j.id, label: j.label, chunks: j.totalChunks, doneChunks: j.doneChunks.load(ordering: .relaxed),
                failedChunks: j.failedChunks.load(ordering: .relaxed), bytes: j.totalBytes,
                doneBytes: j.doneBytes.load(ordering: .relaxed), seconds: j.elapsedSeconds,
                finished: j.isFinished, error: j.error,
                finishedAt: j.isFinished ? Date().timeIntervalSince1970 - j.secondsSinceFinished : nil)
    }

    func status() -> StatusInfo {
        let s = fetcher.stats
        let cacheUsage = cache.isScanned ? cache.usage : nil
        var info = StatusInfo(
            mountpoint: mountpoint, env: env, revision: ref.revision, manifest: ref.manifest.hex,
            store: store.description, pid: ProcessControl.pid, offline: offline,
            entries: manifest.entries.count, totalBytes: manifest.totalFileBytes, chunks: manifest.chunks.count,
            cacheDir: cache.directory, cacheBytes: cacheUsage?.bytes, cacheEntries: cacheUsage?.entries, cacheLimit: cache.limit,
            requests: s.requests.load(ordering: .relaxed), chunksFetched: s.chunksFetched.load(ordering: .relaxed),
            bytesFetched: s.bytesFetched.load(ordering: .relaxed), rawBytesFetched: s.rawBytesFetched.load(ordering: .relaxed),
            cacheHits: s.hits.load(ordering: .relaxed), joinedFetches: s.joined.load(ordering: .relaxed),
            fetchErrors: s.errors.load(ordering: .relaxed), corruptChunks: s.corrupt.load(ordering: .relaxed),
            readAheadQueued: pool.queuedReadAhead, recordedChunks: recorder.chunks.count,
            rssBytes: ProcessControl.residentBytes(), jobs: pool.jobs.map(Self.info), lastError: fetcher.lastError,
            signedBy: signedBy)
        info.storeCheck = StoreCheck.ask(store, env: env, mounted: ref)
        info.fuseOps = fuseOps.snapshot
        info.fuseReadBytes = fuseOps.readBytes
        info.fusePushedFiles = fuseOps.pushedFiles
        info.fusePushedBytes = fuseOps.pushedBytes
        info.demandWaits = s.demandWaits.load(ordering: .relaxed)
        info.demandWaitSeconds = Double(s.demandWaitNs.load(ordering: .relaxed)) / 1e9
        info.readerFollows = pool.stats.follows.load(ordering: .relaxed)
        let cpu = ProcessControl.cpuSeconds()
        info.cpuUserSeconds = cpu.user
        info.cpuSystemSeconds = cpu.system
        info.native = native.withLock { $0 }
        if let p = primer.withLock({ $0 }) {
            info.primedDirectories = p.directories.load(ordering: .relaxed)
            info.primerFinished = p.finished.load(ordering: .relaxed)
        }
        if let r = nativeReadAhead.withLock({ $0 }) {
            info.nativeReadAhead = NativeReadAheadInfo(profile: r.profile, files: r.stats.files.load(ordering: .relaxed),
                                                       bytes: r.stats.bytes.load(ordering: .relaxed),
                                                       plannedBytes: r.stats.plannedBytes.load(ordering: .relaxed),
                                                       finished: r.stats.finished.load(ordering: .acquiring),
                                                       alreadyCached: r.stats.alreadyCached.load(ordering: .relaxed))
        }
        if let u = cacheUsage, u.otherBytes > 0 { info.cacheTreeBytes = u.otherBytes }
        return info
    }

    /// Chunks of the files at `paths` (relative to the root; a directory means everything under
    /// it), in path order; and how many paths were not in the tree.
    func chunksOf(paths: [String]) -> ([UInt32], Int) {
        var out: [UInt32] = []
        var missing = 0
        func add(_ i: Int) {
            switch manifest.entries[i].kind {
            case .regular: out += fs.chunks(ofEntry: i)
            case .directory: for c in manifest.children(i) { add(c) }
            case .symlink: break
            }
        }
        for p in paths {
            if let i = manifest.resolve(Array(p.utf8)) { add(i) } else { missing += 1 }
        }
        return (out, missing)
    }

    func profileKey(_ name: String) throws -> String {
        guard Ref.isValidEnvName(name) else { throw MountError("invalid profile name '\(name)' (letters, digits, '-', '_', '.')") }
        return Profile.objectKey(env: env, manifest: ref.manifest, name: name)
    }

    func saveProfile(_ name: String) throws -> (String, Int) {
        let key = try profileKey(name)
        let order = recorder.chunks
        guard !order.isEmpty else { throw MountError("nothing has been read from \(mountpoint) yet; run the workload first") }
        let profile = Profile(manifest: ref.manifest, chunks: order.map { manifest.chunks[Int($0)].id })
        guard store.isWritable else { throw MountError("\(store.description) is read-only; cannot save profile \(name)") }
        try store.put(key, profile.encode())
        return (key, order.count)
    }

    func warmProfile(_ name: String) throws -> FetchJob { try queueProfile(name).job }

    /// Queues profile `name`'s chunks; the job and the chunks (indices, in the profile's order).
    func queueProfile(_ name: String) throws -> (job: FetchJob, chunks: [UInt32]) {
        let chunks = try profileChunks(name)
        pool.addProfile(chunks)
        return (pool.submit(label: "profile \(name)", chunks: chunks), chunks)
    }

    /// Profile `name`'s chunks (indices, in the profile's order), from the store.
    func profileChunks(_ name: String) throws -> [UInt32] {
        let key = try profileKey(name)
        let bytes: [UInt8]
        do { bytes = try store.get(key) } catch let e as StoreError where e.isNotFound {
            throw ProfileNotFound(description: "no profile '\(name)' for \(env) revision \(ref.revision) in \(store.description) (save one with `envmount profile save`)")
        }
        let p = try Profile.decode(bytes)
        guard p.manifest == ref.manifest else { throw MountError("profile \(key) was recorded for another manifest") }
        return p.chunks.compactMap { chunkIndex[$0] }
    }
}

/// The store holds no such profile for the mounted revision.
public struct ProfileNotFound: Error, CustomStringConvertible {
    public let description: String
}
