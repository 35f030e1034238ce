import ArgumentParser
import EnvFormat
import EnvPublish
import EnvPython
import EnvStore
import SysKit

struct PublishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish a prepared Python venv (or any directory tree) to an envmount store (the default subcommand).",
        discussion: """
            Splits the files of SOURCE into content-defined chunks (about 1 MiB), uploads the chunks \
            the store does not have yet (zstd-compressed, named by SHA-256), then a manifest of the \
            tree, then moves the ref refs/ENV to it. A re-publish after a package upgrade uploads \
            only the chunks that changed. If anything fails, the ref stays where it was.

            STORE is a directory (a path or file:///path) or s3://bucket/prefix.

            SOURCE may be the mount point of `envmount mount … --writable DIR`: then the mount's \
            merged tree (the environment plus what was installed or removed in it) is published as \
            a new revision, and every file the layer did not change is taken from the revision the \
            layer was made over without being read (its chunks are in the store already). STORE \
            and --env default to the store and environment the mount came from. A mount without \
            --writable is refused: its tree is a published revision already.

            Examples:
              envpublish ~/venvs/torch /srv/envstore          # same as: envpublish publish ~/venvs/torch /srv/envstore
              envpublish .venv s3://my-bucket/envs --env torch-cu121 --endpoint https://ACCOUNT.r2.cloudflarestorage.com
              envmount mount /srv/envstore /opt/venv --env torch --writable /var/lib/venv-layer
              /opt/venv/bin/python -m pip install some-package
              envpublish /opt/venv                            # revision N+1 of torch in /srv/envstore
            """)

    @Argument(help: "The tree to publish: a venv directory, or the mount point of a writable envmount mount.")
    var source: String

    @Argument(help: "The store: a directory path, file:///dir or s3://bucket/prefix (for a writable envmount mount, default: the store it was mounted from).")
    var store: String?

    @Option(help: "Environment name (default: SOURCE's directory name; for a writable envmount mount, the environment it was mounted from).")
    var env: String?

    @Flag(help: "Leave out FIFOs, sockets and device nodes with a warning instead of failing.")
    var skipSpecial = false

    @Option(name: .customLong("exclude"), help: ArgumentHelp("Leave out paths matching PATTERN, rsync's rules (repeatable): `__pycache__`, `*.pyc`, `.pytest_cache/` (directories only), `/share/doc` (anchored at the top), `a/b` (the end of a path), `**` across directories.", valueName: "PATTERN"))
    var excludes: [String] = []

    @Option(help: ArgumentHelp("Read exclude patterns from FILE, one a line (`#` and `;` start comments, a `- ` prefix is allowed).", valueName: "FILE"))
    var excludeFrom: [String] = []

    @Option(help: "Price of a GB-month for the cost line (default: Cloudflare R2's $0.015; S3 Standard is $0.023).")
    var pricePerGb: Double = StoreCost.defaultPricePerGB

    @Option(help: "zstd level for chunks (1-19). Chunks are compressed one by one, so level 4 is needed to stay within 4 % of one `zstd -3` stream of the tree (measured: 3 → +4.8 %, 4 → +4.0 %, 5 → +0.0 % but 20 % slower).")
    var level: Int32 = 4

    @Option(help: "Chunks compressed and uploaded in parallel.")
    var jobs: Int = 8

    @Option(help: "S3 endpoint URL (R2, MinIO); default AWS_ENDPOINT_URL or AWS.")
    var endpoint: String?

    @Option(help: "S3 region (R2: auto); default AWS_REGION or the profile's.")
    var region: String?

    @Flag(help: "Also publish the venv's base interpreter (the installation pyvenv.cfg's `home` belongs to: pyenv, uv-managed, python-build-standalone) under .envmount-python/, so the mount runs on a machine without that Python. Its site-packages and test suite are left out. A system Python in /usr is refused.")
    var withPython = false

    @Option(help: "PEM file of the CAs to trust for an s3:// endpoint over TLS (default: AWS_CA_BUNDLE, the AWS profile's ca_bundle, CURL_CA_BUNDLE, SSL_CERT_FILE, else the system store).",
            completion: .file())
    var caBundle: String?

    @Option(name: .customLong("sign"), help: ArgumentHelp(
        "Sign the ref with this Ed25519 private key (PEM, from `envpublish keygen` or `openssl genpkey -algorithm ed25519`).",
        discussion: "Mounts given the matching public key (`envmount mount --trust KEY.pub`, or /etc/envmount/trusted.d/) accept only refs it signed.",
        valueName: "KEYFILE"))
    var signKey: String?

    @Option(name: .customLong("record"), help: ArgumentHelp(
        "After publishing, record a start-up profile: run this Python code on a fresh mount of the new revision and store what it read (repeatable; NAME=CODE names the profile, else `default`).",
        discussion: "Without --record, the imports of the environment's top-level packages that import cleanly (each tried in its own interpreter with a time limit) are recorded as `default`. Every mount prefetches `default`. Needs envmount next to envpublish, root (or FUSE rights) and a Python environment.",
        valueName: "CODE"))
    var records: [String] = []

    @Flag(help: "Do not record a start-up profile after publishing.")
    var noRecord = false

    @Option(help: "Seconds a recorded snippet (and the import probe) may run.")
    var recordTimeout: Double = 300

    @Flag(name: .shortAndLong, help: "Print only errors and the final ref.")
    var quiet = false

    func validate() throws {
        guard (1...19).contains(level) else { throw ValidationError("--level must be between 1 and 19") }
        guard jobs >= 1 && jobs <= 256 else { throw ValidationError("--jobs must be between 1 and 256") }
        if noRecord && !records.isEmpty { throw ValidationError("--record and --no-record exclude each other") }
        guard recordTimeout > 0, recordTimeout.isFinite else { throw ValidationError("--record-timeout must be a positive number of seconds") }
        for r in ProfileRecording.parse(records) where r.code.trimmingWhitespace().isEmpty {
            throw ValidationError("--record '\(r.profile)=' has no code to run")
        }
        guard pricePerGb.isFinite && pricePerGb >= 0 else { throw ValidationError("--price-per-gb must be a number >= 0") }
    }

    func run() throws {
        ProcessControl.ignoreSIGPIPE()
        let layer: WritableMount?
        do {
            switch try WritableMount.classify(source) {
            case .directory: layer = nil
            case let .writable(w): layer = w
            case let .readOnly(env):
                throw PublishError.layer("\(source) is a read-only envmount mount of \(env): its tree is a published revision already; mount it with --writable DIR to change it and publish that mount, or publish the directory it was built from")
            }
            if layer != nil && withPython {
                throw PublishError.layer("--with-python cannot add an interpreter to a writable mount: it publishes the interpreter its base revision bundled, if any")
            }
            if layer == nil && store == nil {
                throw PublishError.layer("missing STORE: only a writable envmount mount knows the store it came from (envpublish SOURCE STORE)")
            }
        } catch {
            Console.error("envpublish: \(error)")
            throw ExitCode.failure
        }
        let store = self.store ?? layer!.record.store
        let name = env ?? layer?.record.env ?? String((source.hasSuffix("/") ? String(source.dropLast()) : source).split(separator: "/").last ?? "")
        var storeOptions = StoreOptions()
        storeOptions.endpoint = endpoint
        storeOptions.region = region
        storeOptions.caBundle = caBundle
        var options = PublishOptions(env: name)
        options.skipSpecial = skipSpecial
        options.compressionLevel = level
        options.workers = jobs
        options.withPython = withPython
        options.excludes = excludes
        options.layer = layer
        let tty = Console.isTerminal(2)
        let quiet = self.quiet
        do {
            for file in excludeFrom {
                let bytes: [UInt8]
                do { bytes = try FS.readFile(file) } catch { throw PublishError.unreadable(path: file, reason: "\(error)") }
                options.excludes += try ExcludeRules.patterns(fromFile: bytes, path: file)
            }
            options.signer = try signKey.map { try RefSigner(keyFile: $0) }
            if let k = signKey, let st = try? FS.stat(k), st.mode & 0o077 != 0 {
                Console.error("envpublish: warning: signing key \(k) can be read by others (mode \(String(st.mode & 0o777, radix: 8))); chmod 600 it")
            }
            let s = try StoreFactory.open(store, options: storeOptions)
            let publisher = Publisher(store: s, options: options, progress: { p in
                guard !quiet else { return }
                let line = "publishing: \(p.filesDone)/\(p.filesTotal) files, \(formatBytes(p.bytesRead))/\(formatBytes(p.bytesTotal)) read, "
                    + "\(p.chunks) chunks, \(p.chunksUploaded) uploaded (\(formatBytes(p.bytesUploaded)))"
                    + (layer == nil ? "" : "; \(p.filesReused) unchanged files (\(formatBytes(p.bytesReused))) reused unread")
                if tty { Console.write(2, "\r\u{1b}[K" + line) } else if p.filesDone == p.filesTotal { Console.error(line) }
            })
            let r = try publisher.publish(source: source)
            if tty && !quiet { Console.write(2, "\r\u{1b}[K") }
            if !quiet {
                Console.out("""
                    \(r.files) files (\(formatBytes(r.fileBytes))), \(r.directories) directories, \(r.symlinks) symlinks, \
                    \(r.hardlinks) hardlinks\(r.skipped > 0 ? ", \(r.skipped) special files skipped" : "")\
                    \(options.excludes.isEmpty ? "" : "; excluded \(r.excludedFiles) files (\(formatBytes(r.excludedBytes)))")
                    \(r.chunks) chunks: \(r.chunksUploaded) uploaded (\(formatBytes(r.bytesUploaded)) compressed), \
                    \(r.chunksReused) already in the store; manifest \(formatBytes(UInt64(r.manifestBytes)))
                    """)
            }
            if !quiet, let base = r.baseRevision {
                Console.out("from the writable mount \(layer!.mountpoint): \(r.filesReused) unchanged files (\(formatBytes(r.bytesReused))) reused unread from revision \(base), "
                            + "\(r.files - r.filesReused) files (\(formatBytes(r.bytesRead))) read")
            } else if !quiet, let l = layer {
                Console.out("from the writable mount \(l.mountpoint): every file read (its base revision \(l.record.revision) is not in \(store))")
            }
            let signed = r.ref.signature.map { ", signed by key \($0.keyID)" } ?? ""
            if r.unchanged {
                Console.out("\(name): unchanged, still revision \(r.ref.revision) (manifest \(r.ref.manifest.hex.prefix(16))\(signed)) in \(String(format2: r.seconds)) s")
            } else {
                Console.out("\(name): revision \(r.ref.revision), manifest \(r.ref.manifest.hex.prefix(16))\(signed), published to \(store) in \(String(format2: r.seconds)) s")
            }
            for c in r.carriedProfiles {
                let dropped = c.filesDropped > 0 ? "; \(c.filesDropped) files it covered are gone" : ""
                Console.out("carried profile \(c.name) (\(c.chunks) chunks, \(formatBytes(c.rawBytes))) from revision \(c.fromRevision)\(dropped)")
            }
            if !quiet, let cost = try? StoreCost.measure(s) {
                Console.out(cost.summary(pricePerGB: pricePerGb))
            }
            if !noRecord {
                let snippets = ProfileRecording.parse(records)
                let defaultKey = Profile.objectKey(env: name, manifest: r.ref.manifest, name: "default")
                if r.unchanged && snippets.isEmpty && ((try? s.exists(defaultKey)) ?? false) {
                    if !quiet { Console.out("profile default: already recorded for this revision") }
                } else {
                    var storeArgs: [String] = []
                    if let e = endpoint { storeArgs += ["--endpoint", e] }
                    if let g = region { storeArgs += ["--region", g] }
                    if let c = caBundle { storeArgs += ["--ca-bundle", (try? FS.realpath(c)) ?? c] }
                    let rec = ProfileRecording(store: store, storeArgs: storeArgs, env: name, manifestHex: r.ref.manifest.hex, revision: r.ref.revision,
                                               source: (try? FS.realpath(source)) ?? source, timeout: recordTimeout, quiet: quiet)
                    do {
                        if try !rec.run(snippets: snippets) { throw RecordError("a recorded snippet failed (see above)") }
                    } catch {
                        throw RecordError("published revision \(r.ref.revision), but \(error)")
                    }
                }
            }
        } catch {
            if tty { Console.write(2, "\r\u{1b}[K") }
            Console.error("envpublish: \(error)")
            throw ExitCode.failure
        }
    }
}
