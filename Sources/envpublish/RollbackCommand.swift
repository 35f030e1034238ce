import ArgumentParser
import EnvFormat
import EnvPublish
import EnvStore
import SysKit

struct RollbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Make an older revision current again, as a new revision.",
        discussion: """
            History is never rewritten: the manifest of revision N is committed as the next \
            revision, whose record says it restores N (see `envmount ls`). Mounts that follow \
            the ref get it on their next mount.

            Example:
              envpublish rollback /srv/envstore --env torch --to 3
            """)

    @Argument(help: "The store: a directory path, file:///dir or s3://bucket/prefix.")
    var store: String

    @Option(help: "Environment name.")
    var env: String

    @Option(help: "The revision to make current again.")
    var to: UInt64

    @Option(name: .customLong("sign"), help: ArgumentHelp("Sign the new revision's ref with this Ed25519 private key (as `envpublish --sign`).", valueName: "KEYFILE"))
    var signKey: String?

    @Option(help: "S3 endpoint URL (R2, MinIO); default AWS_ENDPOINT_URL or AWS.")
    var endpoint: String?

    @Option(help: "S3 region (R2: auto); default AWS_REGION or the profile's.")
    var region: String?

    func validate() throws {
        guard Ref.isValidEnvName(env) else { throw ValidationError("invalid environment name '\(env)'") }
        guard to >= 1 else { throw ValidationError("--to must be a revision number (1 or more)") }
    }

    func run() throws {
        ProcessControl.ignoreSIGPIPE()
        var o = StoreOptions()
        o.endpoint = endpoint
        o.region = region
        do {
            let s = try StoreFactory.open(store, options: o)
            let signer = try signKey.map { try RefSigner(keyFile: $0) }
            let env = self.env
            let r = try Rollback.run(store: s, env: env, to: to, encodeRef: { ref in try (signer?.sign(ref, env: env) ?? ref).encode() })
            Console.out("\(env): revision \(r.revision) restores revision \(to) (manifest \(r.manifest.prefix(16))), now current")
        } catch {
            Console.error("envpublish: \(error)")
            throw ExitCode.failure
        }
    }
}
