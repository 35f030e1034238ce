import ArgumentParser
import Glibc
import SysKit

/// `envpublish keygen KEYFILE`: a new Ed25519 signing key for `envpublish --sign`.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make an Ed25519 key pair for signing environments.",
        discussion: """
            Writes the private key to KEYFILE (PEM PKCS#8, mode 0600) and the public key to \
            KEYFILE.pub (PEM). Publish with `envpublish SOURCE STORE --sign KEYFILE`; give \
            KEYFILE.pub to the machines that mount (`envmount mount --trust KEYFILE.pub`, or copy \
            it into /etc/envmount/trusted.d/). Keys from `openssl genpkey -algorithm ed25519 -out KEY` \
            and `openssl pkey -in KEY -pubout -out KEY.pub` work the same.

            Example:
              envpublish keygen ~/.config/envmount/team.key
            """)

    @Argument(help: "Where to write the private key; the public key goes to KEYFILE.pub.")
    var keyfile: String

    @Flag(help: "Replace KEYFILE and KEYFILE.pub if they exist (the old key is lost).")
    var force = false

    func run() throws {
        do {
            let key = try Ed25519PrivateKey.generate()
            let priv = try key.pem(), pub = try key.publicKey.pem()
            let pubfile = keyfile + ".pub"
            if force {
                try FS.writeFileAtomically(keyfile, priv, mode: 0o600)
                try FS.writeFileAtomically(pubfile, pub, mode: 0o644)
            } else {
                for f in [keyfile, pubfile] where FS.exists(f) {
                    throw Ed25519Error("\(f) exists; refusing to overwrite a key (use --force to replace it)")
                }
                // O_EXCL: a file that appeared since the check is not overwritten either. The
                // private key is created 0600 before any byte is written.
                try Self.writeNew(keyfile, priv, mode: 0o600)
                try Self.writeNew(pubfile, pub, mode: 0o644)
            }
            Console.out("wrote \(keyfile) (private, mode 0600) and \(pubfile) (public); key id \(key.publicKey.keyID)")
        } catch {
            Console.error("envpublish: \(error)")
            throw ExitCode.failure
        }
    }

    static func writeNew(_ path: String, _ bytes: [UInt8], mode: UInt32) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: mode)
        defer { fd.close() }
        try fd.writeAll(bytes)
        try fd.fsync()
    }
}
