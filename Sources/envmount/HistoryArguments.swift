import ArgumentParser
import EnvDaemon
import EnvFormat
import EnvPublish
import EnvStore

/// The store and environment that `diff` and `freeze` read revision records from.
struct HistoryArguments: ParsableArguments {
    @Argument(help: "The store: a directory, file:///dir, s3://bucket/prefix, or http(s)://…")
    var store: String

    @Option(help: "Environment name.")
    var env: String

    @OptionGroup var storeArguments: StoreArguments

    func validate() throws {
        guard Ref.isValidEnvName(env) else { throw ValidationError("invalid environment name '\(env)'") }
    }

    func open() throws -> (store: any ObjectStore, history: HistoryAccess) {
        let s = try StoreFactory.open(HistoryAccess.storeSpec(store), options: storeArguments.options)
        return (s, HistoryAccess(store: s, env: env))
    }
}
