// What a machine remembers about the signed refs it has accepted: per store and environment,
// the highest revision and its manifest. A store writer (or a cache in between) can then not
// bring back an older, known-vulnerable revision, nor rewrite a revision number to another
// manifest. It lives outside the chunk cache, so clearing the cache does not reset it.
import Glibc
import SysKit

public struct RollbackState: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// `$ENVMOUNT_STATE_DIR`, else `/var/lib/envmount/state` for root, else
    /// `${XDG_STATE_HOME:-~/.local/state}/envmount`.
    public static func defaultDirectory() throws -> String {
        if let d = ProcessControl.environment("ENVMOUNT_STATE_DIR"), !d.isEmpty { return d }
        if ProcessControl.userID == 0 { return "/var/lib/envmount/state" }
        if let x = ProcessControl.environment("XDG_STATE_HOME"), !x.isEmpty { return x + "/envmount" }
        if let h = ProcessControl.environment("HOME"), !h.isEmpty { return h + "/.local/state/envmount" }
        throw TrustError.state("no place for rollback state (HOME is unset): set ENVMOUNT_STATE_DIR or --state-dir")
    }

    public struct Seen: Sendable, Equatable {
        public var revision: UInt64
        public var manifest: ChunkID
        public init(revision: UInt64, manifest: ChunkID) { self.revision = revision; self.manifest = manifest }
    }

    /// `DIR/rollback/<16 hex of the store's SHA-256>/<env>`.
    public func file(store: String, env: String) -> String {
        "\(directory)/rollback/\(Hex.encode(SHA256.hash(Array(store.utf8))).prefix(16))/\(env)"
    }

    /// What was last accepted for `env` in `store`, if anything.
    public func seen(store: String, env: String) throws -> Seen? {
        let path = file(store: store, env: env)
        let bytes: [UInt8]
        do { bytes = try FS.readFile(path) } catch let e as SystemError where e.errno == ENOENT { return nil } catch {
            throw TrustError.state("cannot read rollback state \(path): \(error)")
        }
        var revision: UInt64?, manifest: ChunkID?
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        for line in lines.dropFirst() {
            let p = line.split(separator: " ", maxSplits: 1)
            guard p.count == 2 else { continue }
            if p[0] == "revision" { revision = UInt64(p[1]) }
            if p[0] == "manifest" { manifest = ChunkID(hex: String(p[1])) }
        }
        guard lines.first == "envmount-seen 1", let revision, let manifest else {
            throw TrustError.state("rollback state \(path) is damaged (remove it to accept what the store holds now)")
        }
        return Seen(revision: revision, manifest: manifest)
    }

    /// Checks `ref` against what was seen and, when it is newer, records it; one process at a
    /// time per environment (a POSIX lock on a file beside the record, so two mounts cannot
    /// lower it; the lock is per process, and a process admits one ref at a time).
    /// With `allowOlder` an older revision passes and is not recorded (an explicit
    /// `--revision N`); the same revision with another manifest never passes.
    public func admit(_ ref: Ref, env: String, store: String, source: String, allowOlder: Bool = false) throws {
        let path = file(store: store, env: env)
        let dir = String(path[..<path.lastIndex(of: "/")!])
        try Self.makePrivateDirectory(directory)
        do { try FS.makeDirectories(dir, mode: 0o700) } catch { throw TrustError.state("cannot create rollback state directory \(dir): \(error)") }
        let lock: FileDescriptor
        do {
            lock = try FileDescriptor.open(path + ".lock", O_RDWR | O_CREAT, mode: 0o600)
            try lock.lockExclusive()
        } catch { throw TrustError.state("cannot lock rollback state \(path): \(error)") }
        defer { lock.close() }
        if let seen = try seen(store: store, env: env) {
            if ref.revision == seen.revision && ref.manifest != seen.manifest {
                throw TrustError.rewritten(source: source, revision: ref.revision, manifest: ref.manifest, seen: seen.manifest)
            }
            if ref.revision < seen.revision {
                if allowOlder { return }
                throw TrustError.rollback(source: source, revision: ref.revision, seen: seen.revision, stateFile: path)
            }
            if ref.revision == seen.revision { return }
        }
        let text = "envmount-seen 1\nstore \(store)\nenv \(env)\nrevision \(ref.revision)\nmanifest \(ref.manifest.hex)\n"
            + "key \(ref.signature?.keyID ?? "-")\n"
        do { try FS.writeFileAtomically(path, Array(text.utf8), mode: 0o600) } catch {
            throw TrustError.state("cannot record revision \(ref.revision) of \(env) in \(path): \(error)")
        }
    }

    /// The state directory is created 0700; one that someone else owns, or that group or others
    /// may write, would let them reset what this machine has seen, so it is refused.
    static func makePrivateDirectory(_ path: String) throws {
        do { try FS.makeDirectories(path, mode: 0o700) } catch {
            throw TrustError.state("cannot create rollback state directory \(path): \(error)")
        }
        guard let st = try? FS.stat(path) else { throw TrustError.state("cannot stat rollback state directory \(path)") }
        if st.uid != ProcessControl.userID {
            throw TrustError.state("rollback state directory \(path) belongs to uid \(st.uid), not to this user (uid \(ProcessControl.userID)); refusing it")
        }
        if st.mode & 0o022 != 0 {
            throw TrustError.state("rollback state directory \(path) is writable by group or others (mode \(String(st.mode & 0o7777, radix: 8))); refusing it (chmod 700)")
        }
    }
}
