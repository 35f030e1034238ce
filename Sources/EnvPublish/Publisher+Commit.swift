// Stage 4 of a publish: make the new tree visible. Everything it names is durable first
// (`sync`), then the manifest, then a revision record claims the next number and the ref moves
// to it (RevisionLog: atomic create, then compare-and-swap).
import Glibc
import SysKit
import EnvFormat
import EnvStore

extension Publisher {
    /// The bytes of `refs/<env>` for `ref`: `options.encodeRef` (a signer) or the plain encoding.
    func encodeRef(_ ref: Ref) throws -> [UInt8] {
        try options.encodeRef?(ref) ?? ref.encode()
    }

    /// Everything uploaded is made durable, then the manifest is written (once: it is named by
    /// its hash).
    func putManifest(_ encoded: [UInt8]) throws {
        let key = Ref.manifestKey(ChunkID.of(encoded))
        do {
            try store.sync()
            if !(try store.exists(key)) { try store.put(key, encoded) }
        } catch {
            throw PublishError.store("\(error)")
        }
    }

    /// Whether a gc finished since `before` was read; waits first for one that is running (see
    /// GarbageCollector: a gc that started before the manifest was written may not know it).
    func gcRan(since before: [UInt8]?) throws -> Bool {
        var waited = false
        if let c = store as? any ConsistentStore {
            while let running = try c.listDetailed(prefix: "gc/").first(where: { $0.key == GCMarker.running }),
                  ProcessControl.wallClockSeconds() - running.modified < GCMarker.staleAfter {
                if !waited { warn("envpublish: waiting for a gc of \(store.description) to finish") }
                waited = true
                usleep(500_000)
            }
        }
        let now = try? store.get(GCMarker.completed)
        return waited || now != before
    }

    func commit(manifest encoded: [UInt8], table: [Manifest.ChunkRecord], previous: Ref?, template: RevisionRecord,
                result: inout PublishResult) throws {
        let manifestID = result.ref.manifest
        do {
            if let p = previous, p.manifest == manifestID {
                result.ref = p
                result.unchanged = true
                // An unchanged tree published with a new key: the same revision, now signed by it.
                if let s = options.signer, p.signature?.keyID != s.keyID {
                    result.ref = try s.sign(p, env: options.env)
                    try store.put(Ref.objectKey(env: options.env), try encodeRef(result.ref))
                }
                return
            }
            // The ref is signed for the number actually claimed (a lost race re-signs for n+1).
            let signer = options.signer, env = options.env
            let record = try RevisionLog(store: store, env: env).commit(template, after: previous) { ref in
                try encodeRef(try signer?.sign(ref, env: env) ?? ref)
            }
            result.ref = try Ref.decode(record.refBytes)
            result.record = record
        } catch let e as PublishError {
            throw e
        } catch {
            throw PublishError.store("\(error)")
        }
    }

    /// The facts of this publish for its revision record (number and ref filled in at commit).
    func recordTemplate(manifest: ChunkID, publishedAt: Int64, sourcePath: String, walker: TreeWalker,
                        table: [Manifest.ChunkRecord], uploaded: UploadResult, reuse: LayerReuse? = nil) -> RevisionRecord {
        RevisionRecord(env: options.env, revision: 0, manifest: manifest.hex, publishedAt: publishedAt,
                       host: PublisherIdentity.host, user: PublisherIdentity.user, source: sourcePath,
                       files: walker.counts.files, fileBytes: uploaded.bytesRead, chunks: table.count,
                       storedBytes: table.reduce(0) { $0 + UInt64($1.storedSize) }, uploadedBytes: uploaded.bytesUploaded,
                       excludedFiles: walker.excluded.files, excludedBytes: walker.excluded.bytes,
                       python: pythonFacts(sourcePath, reuse: reuse).first { $0.key == "python.version" }?.value,
                       packages: packages(sourcePath, reuse: reuse))
    }
}

/// Who publishes, for revision records: the host name and the user name (from /etc/passwd).
public enum PublisherIdentity {
    public static var host: String {
        let h = (try? FS.readFile("/proc/sys/kernel/hostname")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let t = h.split(separator: "\n").first.map(String.init) ?? ""
        return t.isEmpty ? "unknown" : t
    }

    public static var user: String {
        let uid = ProcessControl.userID
        if let pw = try? FS.readFile("/etc/passwd") {
            for line in String(decoding: pw, as: UTF8.self).split(separator: "\n") {
                let f = line.split(separator: ":", omittingEmptySubsequences: false)
                if f.count > 2, UInt32(f[2]) == uid { return String(f[0]) }
            }
        }
        return ProcessControl.environment("USER") ?? "uid \(uid)"
    }
}
