// Stage 2 of a publish: the tree's regular files are read in path order as one stream and cut
// by the chunker on this thread (the one serial stage); each chunk is hashed, compressed and, if
// the store lacks it, uploaded by a pool of workers. A writable mount's unchanged files
// (Publisher+Layer) are not in the stream: their spans name the base revision's chunks.
import Dispatch
import Glibc
import Synchronization
import SysKit
import EnvFormat
import EnvStore

extension Publisher {
    /// The chunk stream as the manifest stage needs it.
    struct UploadResult {
        /// Chunk k of the stream (in stream order; repeats allowed).
        var ids: [ChunkID]
        var sizes: [UInt32]
        var storedSize: [ChunkID: UInt32]
        /// The walker's builder with every file's spans appended (chunk numbers are stream order).
        var builder: ManifestBuilder
        var chunksUploaded: Int
        var bytesUploaded: UInt64
        /// Bytes of every regular file, read or taken from a base revision.
        var bytesRead: UInt64
        var filesReused = 0
        var bytesReused: UInt64 = 0
        /// Chunks the reused files' spans name (in the store, never uploaded by this publish).
        var reusedIDs: Set<ChunkID> = []
    }

    /// Shared state of the upload workers.
    struct Uploads {
        var ids: [ChunkID?] = []
        var sizes: [UInt32] = []
        var present: Set<ChunkID> = []      // in the store before, or uploaded by this run
        var storedSize: [ChunkID: UInt32] = [:]
        var uploaded = 0
        var bytesUploaded: UInt64 = 0
        var error: Error?
    }

    func chunkAndUpload(_ walker: TreeWalker, known: StoreState, scanner: inout PrefixScanner,
                        reuse: LayerReuse? = nil) throws -> UploadResult {
        var builder = walker.builder
        let files = walker.files.filter { reuse?.files[$0.node] == nil }
        let state = Mutex(Uploads())
        state.withLock { s in
            s.present = known.present
            s.storedSize = known.storedSize
        }

        var prog = PublishProgress()
        prog.filesTotal = files.count
        prog.bytesTotal = files.reduce(0) { $0 + $1.stat.size }
        prog.filesReused = reuse?.files.count ?? 0
        prog.bytesReused = reuse?.bytes ?? 0
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
                        s.storedSize[id] = UInt32(z.count)
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
        // Unchanged files of a writable mount: the base's spans, its chunks numbered into the
        // stream's table like any other (they are in the store; none is uploaded).
        var reusedIDs: Set<ChunkID> = []
        if let reuse {
            var number: [Int: Int] = [:]
            for (node, owner) in reuse.files.sorted(by: { $0.key < $1.key }) {
                for span in reuse.spans(owner) {
                    guard span.chunk != Manifest.Span.zeros else { builder.appendSpan(node, span); continue }
                    let b = Int(span.chunk)
                    if number[b] == nil {
                        let rec = reuse.base.chunks[b]
                        number[b] = chunkCount
                        chunkCount += 1
                        state.withLock { s in
                            s.ids.append(rec.id)
                            s.sizes.append(rec.rawSize)
                            if s.storedSize[rec.id] == nil, rec.storedSize > 0 { s.storedSize[rec.id] = rec.storedSize }
                        }
                        reusedIDs.insert(rec.id)
                    }
                    let k = number[b]!
                    builder.appendSpan(node, Manifest.Span(chunk: UInt32(k), offset: span.offset, length: span.length))
                }
            }
        }
        func emit(_ chunks: [StreamChunker.Chunk]) {
            for c in chunks {
                let k = chunkCount
                chunkCount += 1
                state.withLock { s in s.ids.append(nil); s.sizes.append(UInt32(c.bytes.count)) }
                for p in c.pieces {
                    builder.appendSpan(p.file, Manifest.Span(chunk: UInt32(k), offset: UInt32(p.chunkOffset), length: UInt32(p.length)))
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
            guard i < files.count, let fd = try? FileDescriptor.open(files[i].path, O_RDONLY | O_NOFOLLOW) else { return }
            fd.willNeed()
            fd.close()
        }
        for i in 0..<min(readAheadFiles, files.count) { prefetchFile(i) }
        for (n, f) in files.enumerated() {
            if state.withLock({ $0.error != nil }) { break }
            prefetchFile(n + readAheadFiles)
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(f.path, O_RDONLY | O_NOFOLLOW) } catch {
                throw PublishError.unreadable(path: f.path.pathString, reason: "\(error)")
            }
            defer { fd.close() }
            let size = f.stat.size
            var pos: UInt64 = 0
            scanner.begin(node: f.node, name: builder.nodes[f.node].name)
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
                            builder.appendSpan(f.node, Manifest.Span(chunk: Manifest.Span.zeros, offset: 0, length: len))
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
                try scanner.end(path: f.path, relPath: Self.treePath(builder, f.node), size: size)
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
            throw PublishError.store("upload failed, ref \(Ref.objectKey(env: options.env)) left unchanged: \(e)")
        }
        let up = state.withLock { $0 }
        prog.chunksUploaded = up.uploaded
        prog.bytesUploaded = up.bytesUploaded
        prog.chunks = chunkCount
        progress(prog)
        return UploadResult(ids: up.ids.map { $0! }, sizes: up.sizes, storedSize: up.storedSize, builder: builder,
                            chunksUploaded: up.uploaded, bytesUploaded: up.bytesUploaded, bytesRead: prog.bytesTotal + prog.bytesReused,
                            filesReused: prog.filesReused, bytesReused: prog.bytesReused, reusedIDs: reusedIDs)
    }
}
