import ArgumentParser
import EnvFormat
import EnvPublish
import EnvStore
import FoundationEssentials
import SysKit

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List environments and their revisions, with the store's size, dedup savings and monthly cost.",
        discussion: """
            Per revision: number, date, files, logical size, the compressed bytes only that \
            revision holds (what dropping it alone would free), who published it, and which one \
            is current (*). Then the store's size, what dedup saves against keeping every revision \
            whole, and the monthly cost at --price-per-gb (default $0.015, Cloudflare R2; AWS S3 \
            Standard is $0.023).

            Example:
              envmount ls s3://team-envs/prod --env torch
            """)

    @Argument(help: "The store: a directory, file:///dir or s3://bucket/prefix.")
    var store: String

    @Option(help: "Only this environment.")
    var env: String?

    @Flag(help: "Print JSON.")
    var json = false

    @Option(help: "Price of a GB-month (default: Cloudflare R2's $0.015; S3 Standard is $0.023).")
    var pricePerGb: Double = StoreCost.defaultPricePerGB

    @OptionGroup var storeArguments: StoreArguments

    func validate() throws {
        if let e = env, !Ref.isValidEnvName(e) { throw ValidationError("invalid environment name '\(e)'") }
        guard pricePerGb.isFinite && pricePerGb >= 0 else { throw ValidationError("--price-per-gb must be a number >= 0") }
    }

    struct JSONRevision: Encodable {
        var revision: UInt64, publishedAt: Int64, date: String, files: Int, fileBytes: UInt64, storedBytes: UInt64
        var uniqueBytes: UInt64, current: Bool, host: String, user: String, source: String, manifest: String
        var packages: Int, rollbackOf: UInt64?
    }
    struct JSONEnv: Encodable { var name: String; var current: UInt64?; var revisions: [JSONRevision] }
    struct JSONStore: Encodable {
        var store: String, environments: [JSONEnv], totalBytes: UInt64, chunkBytes: UInt64, objects: Int
        var wholeBytes: UInt64, dedupSavedBytes: UInt64, pricePerGBMonth: Double, monthlyCost: Double
    }

    func run() throws {
        do {
            let s = try StoreFactory.open(HistoryAccess.storeSpec(store), options: storeArguments.options)
            let catalog = try StoreCatalog.load(s, env: env, manifests: true)
            let unique = catalog.uniqueBytes()
            let cost = catalog.cost
            var envs: [JSONEnv] = []
            for e in catalog.environments {
                envs.append(JSONEnv(name: e.name, current: e.current?.revision, revisions: e.revisions.map { r in
                    JSONRevision(revision: r.revision, publishedAt: r.publishedAt, date: formatUTC(r.publishedAt), files: r.files,
                                 fileBytes: r.fileBytes, storedBytes: r.storedBytes, uniqueBytes: unique[e.name]?[r.revision] ?? 0,
                                 current: e.current?.revision == r.revision, host: r.host, user: r.user, source: r.source,
                                 manifest: r.manifest, packages: r.packages.count, rollbackOf: r.rollbackOf)
                }))
            }
            if json {
                let doc = JSONStore(store: s.description, environments: envs, totalBytes: cost.totalBytes, chunkBytes: cost.chunkBytes,
                                    objects: cost.objects, wholeBytes: cost.wholeBytes, dedupSavedBytes: cost.dedupSaved,
                                    pricePerGBMonth: pricePerGb, monthlyCost: cost.monthly(pricePerGB: pricePerGb))
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                Console.write(1, String(decoding: try enc.encode(doc), as: UTF8.self) + "\n")
                return
            }
            var out = ""
            for e in envs {
                out += "\(e.name)" + (e.current.map { " (current: revision \($0))" } ?? " (no ref)") + "\n"
                if e.revisions.isEmpty { out += "  no recorded revisions (published before envmount kept them)\n"; continue }
                out += "  " + "rev".leftPadded(5) + "  " + "published".padded(20) + "  " + "files".leftPadded(7) + "  " + "size".leftPadded(10)
                    + "  " + "only here".leftPadded(10) + "  " + "by\n"
                for r in e.revisions.reversed() {
                    out += "  " + ("\(r.revision)" + (r.current ? "*" : " ")).leftPadded(5) + "  " + r.date.padded(20) + "  "
                        + "\(r.files)".leftPadded(7) + "  " + formatDecimalBytes(r.fileBytes).leftPadded(10) + "  "
                        + formatDecimalBytes(r.uniqueBytes).leftPadded(10) + "  " + "\(r.user)@\(r.host)"
                        + (r.rollbackOf.map { "  (rollback to \($0))" } ?? "") + "\n"
                }
            }
            out += cost.summary(pricePerGB: pricePerGb) + "\n"
            Console.write(1, out)
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }
}
