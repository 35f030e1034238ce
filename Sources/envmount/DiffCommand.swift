import ArgumentParser
import EnvDaemon
import EnvFormat
import EnvPublish
import EnvStore
import SysKit

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "What changed between two revisions: packages added, removed, up- and downgraded, then the bytes that moved.",
        discussion: """
            With no revisions given, compares the two latest; with one, that one against the latest. \
            "Bytes that moved" are the chunks TO has and FROM lacks (compressed, what a machine \
            that has FROM cached fetches to read all of TO).

            Example:
              envmount diff /srv/envstore --env torch 3 5
            """)

    @OptionGroup var history: HistoryArguments

    @Argument(help: "The older revision (default: the one before TO).")
    var from: UInt64?

    @Argument(help: "The newer revision (default: the latest).")
    var to: UInt64?

    var env: String { history.env }

    func run() throws {
        do {
            let (s, h) = try history.open()
            var a = from, b = to
            if a == nil || b == nil {
                let ns = try h.numbers()
                if b == nil { b = ns.last }
                if a == nil { a = ns.last { $0 < (b ?? 0) } }
            }
            guard let a, let b else { throw MountError("\(env) has fewer than two recorded revisions in \(s.description); nothing to compare") }
            let ra = try h.record(a), rb = try h.record(b)
            let d = PackageDiff(from: ra.packages, to: rb.packages)
            var out = "\(env): revision \(a) (\(formatUTC(ra.publishedAt))) → \(b) (\(formatUTC(rb.publishedAt)))\n"
            if d.isEmpty { out += "packages: no changes (\(rb.packages.count) installed)\n" }
            for p in d.added { out += "  added       \(p.name) \(p.version)\n" }
            for p in d.removed { out += "  removed     \(p.name) \(p.version)\n" }
            for (o, n) in d.upgraded { out += "  upgraded    \(n.name) \(o.version) → \(n.version)\n" }
            for (o, n) in d.downgraded { out += "  downgraded  \(n.name) \(o.version) → \(n.version)\n" }
            for (o, n) in d.changed { out += "  changed     \(n.name) \(n.version): \(o.requirement) → \(n.requirement)\n" }
            if let ma = ra.manifestID, let mb = rb.manifestID {
                let ca = try chunkTable(s, ma), cb = try chunkTable(s, mb)
                let new = cb.filter { ca[$0.key] == nil }
                let gone = ca.filter { cb[$0.key] == nil }
                let newBytes = new.values.reduce(UInt64(0), +), goneBytes = gone.values.reduce(UInt64(0), +)
                out += "bytes: \(new.count) new chunks, \(formatDecimalBytes(newBytes)) to fetch; \(gone.count) chunks (\(formatDecimalBytes(goneBytes))) no longer used; "
                    + "files \(ra.files) → \(rb.files), size \(formatDecimalBytes(ra.fileBytes)) → \(formatDecimalBytes(rb.fileBytes))\n"
            }
            Console.write(1, out)
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }

    /// Chunk id → compressed size, from a manifest (checked against its id).
    func chunkTable(_ s: any ObjectStore, _ id: ChunkID) throws -> [ChunkID: UInt64] {
        let bytes = try s.get(Ref.manifestKey(id))
        guard ChunkID.of(bytes) == id else { throw MountError("manifest \(id.hex) in \(s.description) does not match its SHA-256") }
        let m = try Manifest.decode(bytes)
        var out: [ChunkID: UInt64] = [:]
        for c in m.chunks { out[c.id] = UInt64(c.storedSize > 0 ? c.storedSize : c.rawSize) }
        return out
    }
}
