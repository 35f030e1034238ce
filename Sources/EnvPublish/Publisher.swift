// EnvPublish: source tree → chunks → manifest → ref, in that order, so a reader never sees a
// ref naming something that is not fully in the store. Chunking is sequential (one stream in
// path order); hashing, compression and upload of each chunk run on a pool of workers.
import Dispatch
import Glibc
import Synchronization
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
    /// Also publish the venv's base interpreter under `.envmount-python/` (see BundledPython).
    public var withPython = false
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
    public var seconds = 0.0
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

    /// Shared state of the upload workers.
    struct Uploads {
        var ids: [ChunkID?] = []
        var stored: [UInt32] = []
        var sizes: [UInt32] = []
        var present: Set<ChunkID> = []      // in the store before, or uploaded by this run
        var knownStoredSize: [ChunkID: UInt32] = [:]
        var uploaded = 0
        var bytesUploaded: UInt64 = 0
        var error: Error?
    }

    public func publish(source: String) throws -> PublishResult {
        let start = ProcessControl.monotonicNs()
        guard Ref.isValidEnvName(options.env) else { throw PublishError.invalidEnvName(options.env) }
        guard store.isWritable else { throw PublishError.store(StoreError.readOnly(store: store.description).description) }
        let sourcePath: String
        do { sourcePath = try FS.realpath(source) } catch { throw PublishError.unreadable(path: source, reason: "\(error)") }

        var walker = TreeWalker(skipSpecial: options.skipSpecial, warn: warn)
        let bundle = options.withPython ? try BundledPython.locate(source: sourcePath) : nil
        try walker.walk(root: sourcePath.pathBytes)
        if let b = bundle {
            guard walker.builder.nodes.allSatisfy({ $0.parent != 0 || $0.name != BundledPython.directoryName.pathBytes }) else {
                throw PublishError.interpreter("\(sourcePath)/\(BundledPython.directoryName) exists; that name is reserved for --with-python")
            }
            walker.excluded = Set(b.excluded)
            try walker.walkExtra(b.prefix.pathBytes, as: BundledPython.directoryName.pathBytes)
        }
        let prefixes = Self.relocationPrefixes(sourcePath: sourcePath, bundle: bundle)
        var scanner = PrefixScanner(prefixes: prefixes)
        if let d = store as? DirectoryStore { try d.createIfMissing() }

        // What the store has: its chunk listing, and stored sizes from the previous manifest.
        let refKey = Ref.objectKey(env: options.env)
        let previous: Ref?
        do { previous = try Ref.decode(try store.get(refKey)) } catch let e as StoreError where e.isNotFound {
            previous = nil
        }
        let state = Mutex(Uploads())
        do {
            let listed = try store.listChunkIDs()
            state.withLock { s in for h in listed { if let id = ChunkID(hex: h) { s.present.insert(id) } } }
            if let p = previous, let m = try? Manifest.decode(try store.get(Ref.manifestKey(p.manifest))) {
                state.withLock { s in for c in m.chunks where c.storedSize > 0 { s.knownStoredSize[c.id] = c.storedSize } }
            }
        }

        var prog = PublishProgress()
        prog.filesTotal = walker.files.count
        prog.bytesTotal = walker.files.reduce(0) { $0 + $1.stat.size }
        var lastReport: UInt64 = 0

        let group = DispatchGroup()
        let slots = DispatchSemaphore(value: options.workers * 2)
        let queue = DispatchQueue(label: "envpublish.upload", attributes: .concurrent)
        let level = options.compressionLevel
        let store = self.store

        func submit(_ chunk: StreamChunker.Chunk, _ k: Int) {
            slots.wait()
            group.enter()
            queue.async {
                defer { slots.signal(); group.leave() }
                if state.withLock({ $0.error != nil }) { return }
                let id = ChunkID.of(chunk.bytes)
                let needsUpload = state.withLock { s -> Bool in
                    s.ids[k] = id
                    if s.present.contains(id) { return false }
                    s.present.insert(id)
                    return true
                }
                guard needsUpload else { return }
                do {
                    let z = try Zstd.compress(chunk.bytes, level: level)
                    try store.put(id.objectKey, z)
                    state.withLock { s in
                        s.knownStoredSize[id] = UInt32(z.count)
                        s.uploaded += 1
                        s.bytesUploaded += UInt64(z.count)
                    }
                } catch {
                    state.withLock { s in
                        s.present.remove(id)
                        if s.error == nil { s.error = error }
                    }
                }
            }
        }

        var chunker = StreamChunker(params: options.chunking)
        var chunkCount = 0
        func emit(_ chunks: [StreamChunker.Chunk]) {
            for c in chunks {
                let k = chunkCount
                chunkCount += 1
                state.withLock { s in s.ids.append(nil); s.sizes.append(UInt32(c.bytes.count)) }
                for p in c.pieces {
                    walker.builder.appendSpan(p.file, Manifest.Span(chunk: UInt32(k), offset: UInt32(p.chunkOffset), length: UInt32(p.length)))
                }
                submit(c, k)
            }
        }

        let blockSize = 4 << 20
        var buffer = [UInt8](repeating: 0, count: blockSize)
        // Reading is the one serial stage: ask the kernel to start reading the files ahead
        // (POSIX_FADV_WILLNEED) so the disk works while this thread chunks.
        let readAheadFiles = 64
        func prefetchFile(_ i: Int) {
            guard i < walker.files.count, let fd = try? FileDescriptor.open(walker.files[i].path, O_RDONLY | O_NOFOLLOW) else { return }
            fd.willNeed()
            fd.close()
        }
        for i in 0..<min(readAheadFiles, walker.files.count) { prefetchFile(i) }
        for (n, f) in walker.files.enumerated() {
            if state.withLock({ $0.error != nil }) { break }
            prefetchFile(n + readAheadFiles)
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(f.path, O_RDONLY | O_NOFOLLOW) } catch {
                throw PublishError.unreadable(path: f.path.pathString, reason: "\(error)")
            }
            defer { fd.close() }
            let size = f.stat.size
            var pos: UInt64 = 0
            scanner.begin(node: f.node, name: walker.builder.nodes[f.node].name)
            do {
                while pos < size {
                    // Sparse sources: holes become zero spans, and are never read.
                    let dataAt = try fd.nextData(from: pos) ?? size
                    if dataAt > pos {
                        let holeEnd = min(dataAt, size)
                        emit(chunker.finish())
                        var h = pos
                        while h < holeEnd {
                            let len = UInt32(min(holeEnd - h, 1 << 30))
                            walker.builder.appendSpan(f.node, Manifest.Span(chunk: Manifest.Span.zeros, offset: 0, length: len))
                            h += UInt64(len)
                        }
                        pos = holeEnd
                        continue
                    }
                    let dataEnd = min(try fd.nextHole(from: pos, size: size), size)
                    while pos < dataEnd {
                        let want = Int(min(UInt64(blockSize), dataEnd - pos))
                        let got = try fd.preadFully(into: &buffer, at: 0, count: want, offset: pos)
                        if got < want { throw PublishError.changedDuringPublish(f.path.pathString) }
                        scanner.feed(offset: pos, buffer: buffer, count: got)
                        emit(chunker.append(file: f.node, fileOffset: pos, bytes: buffer[0..<got]))
                        pos += UInt64(got)
                        prog.bytesRead += UInt64(got)
                    }
                }
                let after = try FS.lstat(f.path)
                if after.size != f.stat.size || after.mtimeNs != f.stat.mtimeNs { throw PublishError.changedDuringPublish(f.path.pathString) }
                try scanner.end(path: f.path, relPath: Self.treePath(walker.builder, f.node), size: size)
            } catch let e as PublishError {
                throw e
            } catch {
                throw PublishError.unreadable(path: f.path.pathString, reason: "\(error)")
            }
            prog.filesDone = n + 1
            let now = ProcessControl.monotonicNs()
            if now - lastReport > 250_000_000 {
                lastReport = now
                state.withLock { s in prog.chunksUploaded = s.uploaded; prog.bytesUploaded = s.bytesUploaded }
                prog.chunks = chunkCount
                progress(prog)
            }
        }
        emit(chunker.finish())
        group.wait()
        if let e = state.withLock({ $0.error }) {
            throw PublishError.store("upload failed, ref \(refKey) left unchanged: \(e)")
        }
        let up = state.withLock { $0 }
        state.withLock { s in prog.chunksUploaded = s.uploaded; prog.bytesUploaded = s.bytesUploaded }
        prog.chunks = chunkCount
        progress(prog)

        // One table entry per distinct chunk; spans are renumbered to it.
        var finalIndex: [ChunkID: UInt32] = [:]
        var table: [Manifest.ChunkRecord] = []
        var remap = [UInt32](repeating: 0, count: chunkCount)
        for k in 0..<chunkCount {
            let id = up.ids[k]!
            if let f = finalIndex[id] { remap[k] = f; continue }
            let f = UInt32(table.count)
            finalIndex[id] = f
            remap[k] = f
            table.append(Manifest.ChunkRecord(id: id, rawSize: up.sizes[k], storedSize: up.knownStoredSize[id] ?? 0))
        }
        var builder = walker.builder
        for n in builder.nodes.indices where !builder.nodes[n].spans.isEmpty {
            builder.remapChunks(n) { $0 == Manifest.Span.zeros ? $0 : remap[Int($0)] }
        }
        let relocation = Relocation(prefixes: prefixes, files: scanner.files,
                                    symlinks: Self.symlinkRecords(builder, prefixes: prefixes), patches: scanner.patches)
        let metadata = (Self.pythonFacts(sourcePath) + Self.environmentFacts(scanner, builder, bundle: bundle)).sorted { $0.key < $1.key }
        let manifest = try builder.build(chunking: options.chunking, sourcePath: sourcePath.pathBytes,
                                         metadata: metadata, chunks: table, relocation: relocation)
        let encoded = try manifest.encode()
        let manifestID = ChunkID.of(encoded)
        var result = PublishResult(ref: Ref(manifest: manifestID, revision: 1, publishedAt: ProcessControl.wallClockSeconds()),
                                   unchanged: false)
        result.directories = walker.counts.directories
        result.files = walker.counts.files
        result.symlinks = walker.counts.symlinks
        result.hardlinks = walker.counts.hardlinks
        result.skipped = walker.counts.skipped
        result.fileBytes = prog.bytesTotal
        result.chunks = table.count
        result.chunksUploaded = up.uploaded
        result.bytesUploaded = up.bytesUploaded
        result.chunksReused = table.count - up.uploaded
        result.manifestBytes = encoded.count
        do {
            try store.sync()
            if !(try store.exists(Ref.manifestKey(manifestID))) { try store.put(Ref.manifestKey(manifestID), encoded) }
            if let p = previous, p.manifest == manifestID {
                result.ref = p
                result.unchanged = true
            } else {
                result.ref.revision = (previous?.revision ?? 0) + 1
                try store.put(refKey, result.ref.encode())
            }
        } catch {
            throw PublishError.store("\(error)")
        }
        result.seconds = Double(ProcessControl.monotonicNs() - start) / 1e9
        return result
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
