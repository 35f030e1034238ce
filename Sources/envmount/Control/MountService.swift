import EnvCache
import EnvFS
import EnvFormat
import EnvStore
import Foundation
import Glibc
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
    let fs: EnvFilesystem
    let fetcher: ChunkFetcher
    let pool: FetchPool
    let recorder: AccessRecorder
    let chunkIndex: [ChunkID: UInt32]

    init(mountpoint: String, opened: OpenedEnvironment, store: any ObjectStore, cache: ChunkCache,
         fs: EnvFilesystem, fetcher: ChunkFetcher, pool: FetchPool, recorder: AccessRecorder) {
        self.mountpoint = mountpoint
        self.env = opened.env
        self.ref = opened.ref
        self.manifest = opened.manifest
        self.offline = opened.offline
        self.store = store
        self.cache = cache
        self.fs = fs
        self.fetcher = fetcher
        self.pool = pool
        self.recorder = recorder
        var idx: [ChunkID: UInt32] = [:]
        for (i, c) in opened.manifest.chunks.enumerated() { idx[c.id] = UInt32(i) }
        chunkIndex = idx
    }

    /// Listens on the mount's control socket on a thread of its own.
    func startControlSocket() throws {
        let dir = ControlPaths.directory()
        try FS.makeDirectories(dir, mode: 0o700)
        let path = ControlPaths.socket(for: mountpoint)
        let listener = try UnixSocket.listen(path)
        let t = Thread { [self] in
            while true {
                guard let conn = try? UnixSocket.accept(listener) else { continue }
                let worker = Thread { [self] in
                    defer { conn.close() }
                    let reply: ControlReply
                    if let line = try? conn.readLine(), let req = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) {
                        reply = handle(req)
                    } else {
                        reply = ControlReply(ok: false, error: "malformed control request")
                    }
                    if var out = try? JSONEncoder().encode(reply) {
                        out.append(0x0a)
                        try? conn.writeAll(Array(out))
                    }
                }
                worker.start()
            }
        }
        t.name = "envmount-control"
        t.start()
    }

    func removeControlSocket() { try? FS.unlink(ControlPaths.socket(for: mountpoint)) }

    func handle(_ req: ControlRequest) -> ControlReply {
        switch req.op {
        case "status":
            return ControlReply(ok: true, status: status())
        case "warm":
            let (chunks, missing) = chunksOf(paths: req.paths ?? [])
            let job = pool.submit(label: req.label ?? "paths", chunks: chunks)
            return ControlReply(ok: true, jobs: [Self.info(job)], missing: missing)
        case "warm-all":
            let job = pool.submit(label: "all", chunks: (0..<UInt32(manifest.chunks.count)).map { $0 })
            return ControlReply(ok: true, jobs: [Self.info(job)])
        case "warm-profile":
            do {
                let job = try warmProfile(req.name ?? "")
                return ControlReply(ok: true, jobs: [Self.info(job)])
            } catch {
                return ControlReply(ok: false, error: "\(error)")
            }
        case "jobs":
            let ids = Set(req.ids ?? [])
            return ControlReply(ok: true, jobs: pool.jobs.filter { ids.isEmpty || ids.contains($0.id) }.map(Self.info))
        case "profile-save":
            do {
                let (key, n) = try saveProfile(req.name ?? "")
                return ControlReply(ok: true, key: key, chunks: n)
            } catch {
                return ControlReply(ok: false, error: "\(error)")
            }
        default:
            return ControlReply(ok: false, error: "unknown control request '\(req.op)'")
        }
    }

    static func info(_ j: FetchJob) -> JobInfo {
        JobInfo(id: j.id, label: j.label, chunks: j.totalChunks, doneChunks: j.doneChunks.load(ordering: .relaxed),
                failedChunks: j.failedChunks.load(ordering: .relaxed), bytes: j.totalBytes,
                doneBytes: j.doneBytes.load(ordering: .relaxed), seconds: j.elapsedSeconds,
                finished: j.isFinished, error: j.error)
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
            rssBytes: ProcessControl.residentBytes(), jobs: pool.jobs.map(Self.info), lastError: fetcher.lastError)
        info.storeCheck = StoreCheck.ask(store, env: env, mounted: ref)
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

    func warmProfile(_ name: String) throws -> FetchJob {
        let key = try profileKey(name)
        let bytes: [UInt8]
        do { bytes = try store.get(key) } catch let e as StoreError where e.isNotFound {
            throw MountError("no profile '\(name)' for \(env) revision \(ref.revision) in \(store.description) (save one with `envmount profile save`)")
        }
        let p = try Profile.decode(bytes)
        guard p.manifest == ref.manifest else { throw MountError("profile \(key) was recorded for another manifest") }
        pool.profileActive.store(true, ordering: .relaxed)
        return pool.submit(label: "profile \(name)", chunks: p.chunks.compactMap { chunkIndex[$0] })
    }
}
