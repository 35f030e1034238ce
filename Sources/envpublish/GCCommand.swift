import ArgumentParser
import EnvFormat
import EnvPublish
import EnvStore
import SysKit

struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Delete revisions you no longer keep, and every object no kept revision needs.",
        discussion: """
            For each environment, keeps the current revision always, plus those chosen by \
            --keep-last and --keep-within (with neither, every revision is kept and gc only removes \
            objects nothing refers to, e.g. chunks of a failed publish). It then deletes the revision \
            records, manifests and profiles no kept revision needs, and the chunks no kept manifest \
            references (S3: DeleteObjects, 1,000 keys a request).

            Objects younger than --grace (default 1h) are never deleted, so a publish running at \
            the same time loses nothing: its uploaded chunks and its manifest are young, and a \
            publish that sees a gc finish while it ran re-checks the chunks it reused before it \
            moves the ref.

            Examples:
              envpublish gc /srv/envstore --keep-last 5 --dry-run
              envpublish gc s3://team-envs/prod --keep-last 3 --keep-within 30d
            """)

    @Argument(help: "The store: a directory path, file:///dir or s3://bucket/prefix.")
    var store: String

    @Option(help: "Keep the N most recent revisions of each environment.")
    var keepLast: Int?

    @Option(help: ArgumentHelp("Keep revisions published within DURATION, e.g. 30d, 12h, 2w, 1d12h.", valueName: "DURATION"))
    var keepWithin: String?

    @Option(help: ArgumentHelp("Never delete objects younger than DURATION.", valueName: "DURATION"))
    var grace: String = "1h"

    @Flag(help: "Say what would be deleted, delete nothing.")
    var dryRun = false

    @Option(help: "Price of a GB-month for the cost line (default: Cloudflare R2's $0.015; S3 Standard is $0.023).")
    var pricePerGb: Double = StoreCost.defaultPricePerGB

    @Option(help: "S3 endpoint URL (R2, MinIO); default AWS_ENDPOINT_URL or AWS.")
    var endpoint: String?

    @Option(help: "S3 region (R2: auto); default AWS_REGION or the profile's.")
    var region: String?

    func validate() throws {
        if let k = keepLast, k < 1 { throw ValidationError("--keep-last must be 1 or more (the current revision is always kept)") }
        if let w = keepWithin, Duration.seconds(w) == nil { throw ValidationError("--keep-within: '\(w)' is not a duration (e.g. 30d, 12h, 90m, 2w)") }
        if Duration.seconds(grace) == nil { throw ValidationError("--grace: '\(grace)' is not a duration (e.g. 1h, 30m, 0s)") }
        guard pricePerGb.isFinite && pricePerGb >= 0 else { throw ValidationError("--price-per-gb must be a number >= 0") }
    }

    func run() throws {
        ProcessControl.ignoreSIGPIPE()
        var o = StoreOptions()
        o.endpoint = endpoint
        o.region = region
        var g = GCOptions()
        g.keepLast = keepLast
        g.keepWithin = keepWithin.flatMap(Duration.seconds)
        g.grace = Duration.seconds(grace) ?? 3600
        g.dryRun = dryRun
        do {
            let s = try StoreFactory.open(store, options: o)
            let r = try GarbageCollector(store: s, options: g, log: { Console.error("gc: \($0)") }).run()
            for env in r.kept.keys.sorted() {
                let dropped = r.dropped[env] ?? []
                Console.out("\(env): keeping revisions \(list(r.kept[env] ?? []))"
                            + (dropped.isEmpty ? "" : "; \(dryRun ? "would drop" : "dropped") \(list(dropped))"))
            }
            let verb = dryRun ? "would free" : "freed"
            let kinds = r.deleted.keys.sorted().map { "\(r.deleted[$0]!.count) \($0)" }.joined(separator: ", ")
            Console.out("\(verb) \(formatDecimalBytes(r.freedBytes)) (\(kinds.isEmpty ? "nothing to delete" : kinds))"
                        + (r.young.count > 0 ? "; kept \(r.young.count) unreferenced objects (\(formatDecimalBytes(r.young.bytes))) younger than \(grace)" : "")
                        + (dryRun ? "" : " in \(String(format2: r.seconds)) s, \(r.requests) delete requests"))
            if let cost = try? StoreCost.measure(s) { Console.out(cost.summary(pricePerGB: pricePerGb)) }
        } catch {
            Console.error("envpublish: \(error)")
            throw ExitCode.failure
        }
    }

    func list(_ ns: [UInt64]) -> String { ns.isEmpty ? "none" : ns.map(String.init).joined(separator: ", ") }
}

/// `30d`, `12h`, `90m`, `45s`, `2w`, `1y`, or several (`1d12h`); a bare number is seconds.
enum Duration {
    static func seconds(_ s: String) -> Int64? {
        if let n = Int64(s), n >= 0 { return n }
        var total: Int64 = 0
        var num = ""
        var any = false
        for c in s {
            if c.isASCII && c.isNumber { num.append(c); continue }
            guard let n = Int64(num) else { return nil }
            let unit: Int64
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            case "w": unit = 7 * 86400
            case "y": unit = 365 * 86400
            default: return nil
            }
            total += n * unit
            num = ""
            any = true
        }
        return any && num.isEmpty ? total : nil
    }
}
