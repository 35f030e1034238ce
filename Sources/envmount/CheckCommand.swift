import ArgumentParser
import EnvCache
import EnvFormat
import EnvDaemon
import EnvFS
import EnvStore
import SysKit

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Say whether an environment will run on this machine, from its manifest alone.",
        discussion: """
            Compares the facts recorded at publish with this machine: the base interpreter (bundled \
            with --with-python, or present at the path the venv names), the CPU architecture and \
            the newest GLIBC version its ELF files need, and the NVIDIA driver its CUDA wheels need. \
            Each finding names the fix. Exits 1 when something will fail. `envmount mount` prints \
            the same findings as warnings.
            """)

    @Argument(help: "The store: a directory, file:///dir, s3://bucket/prefix, or http(s)://…")
    var store: String

    @Option(help: "Environment to check (may be left out when the store holds one).")
    var env: String?

    @Option(help: "Chunk cache directory (where refs and manifests are cached for offline use).")
    var cacheDir: String?

    @OptionGroup var storeArguments: StoreArguments

    func run() throws {
        let findings: [Preflight.Finding]
        let opened: OpenedEnvironment
        do {
            let cache = try ChunkCache(directory: Mountpoints.absolute(cacheDir ?? ChunkCache.defaultDirectory()), limit: nil)
            let s = try StoreFactory.open(store.contains("://") ? store : Mountpoints.absolute(store), options: storeArguments.options)
            opened = try EnvironmentResolver(store: s, cache: cache).resolve(env: env)
            findings = Preflight.run(opened.manifest)
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
        Console.out("\(opened.env) revision \(opened.ref.revision), published from \(String(decoding: opened.manifest.sourcePath, as: UTF8.self))")
        for f in findings {
            Console.out("\(f.level == .ok ? "ok  " : f.level == .warning ? "warn" : "FAIL") \(f.text)")
        }
        if findings.contains(where: { $0.level == .failure }) { throw ExitCode.failure }
    }
}
