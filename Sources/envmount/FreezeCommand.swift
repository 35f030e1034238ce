import ArgumentParser
import EnvFormat
import EnvPublish
import EnvStore
import SysKit

struct FreezeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "freeze",
        abstract: "Print a revision's installed packages as a requirements file (what `pip freeze` printed in its source).",
        discussion: """
            Read from the revision record (the *.dist-info metadata seen at publish time), so nothing \
            is mounted. Like pip freeze it leaves out pip (and, before Python 3.12, setuptools, \
            distribute and wheel); a direct install prints as `name @ URL`, an editable one as `-e PATH`.

            Example:
              envmount freeze /srv/envstore --env torch --revision 3 > requirements.txt
            """)

    @OptionGroup var history: HistoryArguments

    @Option(help: "Revision (default: the current one).")
    var revision: UInt64?

    var env: String { history.env }

    func run() throws {
        do {
            let (_, h) = try history.open()
            let n = try revision ?? h.currentRef().revision
            let r = try h.record(n)
            Console.write(1, PackageScanner.freeze(r.packages, python: r.python))
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }
}
