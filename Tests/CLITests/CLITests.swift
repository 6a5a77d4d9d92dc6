import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

/// The command-line tool as a user runs it: separate processes, exit codes, one-line errors.
@Suite(.serialized) struct CLITests {
    @Test func fourProcessesTimesFiftyAddsLeaveExactly200() async throws {
        let dir = try TemporaryDirectory("cli-procs")
        defer { dir.remove() }
        let runner = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        let processes = 4
        let adds = 50
        // Each process runs its adds one after another, all four at once.
        let script = (0..<processes).map { p in
            (0..<adds).map { a in
                "\(shellQuote(runner.executable)) txn add shared-user --id p\(p)-a\(a) --amount \(a).\(p)0 --currency EUR --merchant M\(a % 7) --mcc 5411 || exit 1"
            }.joined(separator: "\n")
        }
        let running = try script.map { try runShell($0, environment: runner.environment) }
        for r in running {
            r.waitUntilExit()
            #expect(r.terminationStatus == 0)
        }
        let store = try await StoreFactory().makeStore("path:" + dir.path)
        let record = try await store.get("shared-user")
        #expect(record.transactions.count == processes * adds)
        #expect(Set(record.transactions.map(\.id)).count == processes * adds)
        #expect(record.revision == UInt64(processes * adds))
        let listed = try runner.run(["user", "list"])
        #expect(listed.status == 0 && listed.stdout == "shared-user\n")
    }

    @Test func processesOnSeveralUsersWithoutLocksLoseNothing() async throws {
        // locking=none: the compare-and-swap alone must keep every update.
        let dir = try TemporaryDirectory("cli-cas")
        defer { dir.remove() }
        let runner = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:\(dir.path)?locking=none"])
        let script = (0..<3).map { p in
            (0..<30).map { a in
                "\(shellQuote(runner.executable)) txn add u\(a % 2) --id p\(p)-a\(a) --amount 1 --currency EUR || exit 1"
            }.joined(separator: "\n")
        }
        let running = try script.map { try runShell($0, environment: runner.environment) }
        for r in running {
            r.waitUntilExit()
            #expect(r.terminationStatus == 0)
        }
        let store = try await StoreFactory().makeStore("path:\(dir.path)?locking=none")
        #expect(try await store.get("u0").transactions.count == 45)
        #expect(try await store.get("u1").transactions.count == 45)
    }

    @Test func everyKindOfRecordFromTheCommandLine() throws {
        let dir = try TemporaryDirectory("cli-tour")
        defer { dir.remove() }
        let cli = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        func ok(_ args: [String]) throws -> String {
            let out = try cli.run(args)
            #expect(out.status == 0, "\(args): \(out.stderr)")
            return out.stdout
        }
        #expect(
            try ok([
                "txn", "add", "ann", "--id", "t1", "--amount", "12.34", "--currency", "eur", "--merchant",
                "Café",
                "--mcc", "5812", "--category", "food", "--description", "lunch", "--account", "acc-1",
                "--meta", "source=bank",
                "--at", "2026-03-01T12:00:00+01:00",
            ]).contains("added transaction t1"))
        #expect(
            try ok([
                "txn", "add", "ann", "--id", "t1", "--amount", "12.34", "--currency", "EUR", "--merchant",
                "Café",
                "--mcc", "5812", "--category", "food", "--description", "lunch", "--account", "acc-1",
                "--meta", "source=bank",
                "--at", "2026-03-01T11:00:00Z",
            ]).contains("nothing changed"))
        _ = try ok(["answer", "ann", "diet", "vegan"])
        _ = try ok(["answer", "ann", "km", "42.5"])
        _ = try ok(["answer", "ann", "solar", "true"])
        _ = try ok(["answer", "ann", "modes", "bus,bike", "--choices"])
        _ = try ok(["pref", "set", "ann", "units", "metric"])
        _ = try ok([
            "footprint", "add", "ann", "--id", "f1", "--kg", "1.5", "--category", "food", "--methodology",
            "v1",
            "--transaction", "t1",
        ])
        _ = try ok([
            "saving", "add", "ann", "--id", "s1", "--action", "bike", "--kg", "3", "--money", "4.20",
            "--currency", "EUR", "--period-start", "2026-01-01", "--period-end", "2026-02-01",
        ])
        let json = try ok(["user", "show", "ann", "--json"])
        let record = try JSONDecoder().decode(UserRecord.self, from: Data(json.utf8))
        #expect(record.revision == 8)
        #expect(
            record.transactions == [
                Transaction(
                    id: "t1", time: Timestamp(iso8601: "2026-03-01T11:00:00Z")!,
                    amount: Money(minorUnits: 1234, currency: CurrencyCode("EUR")!), merchant: "Café",
                    mcc: 5812,
                    category: "food", description: "lunch", accountID: "acc-1", metadata: ["source": "bank"])
            ])
        #expect(
            record.responses.map(\.answer) == [
                .text("vegan"), .number(42.5), .choices(["bus", "bike"]), .boolean(true),
            ])
        #expect(record.preferences["units"]?.value == "metric")
        #expect(record.footprints.first?.co2e == CO2e(milligrams: 1_500_000))
        #expect(record.savings.first?.moneySaved == Money(minorUnits: 420, currency: CurrencyCode("EUR")!))
        #expect(json.contains("\"amount\" : \"12.34\""))

        // file inspect decodes the stored file to the same JSON.
        let key = try UserKeys().key(for: "ann")
        #expect(try ok(["file", "inspect", dir.path + "/" + key]) == json)
        #expect(try ok(["verify"]).contains("1 healthy, 0 damaged"))
        #expect(try ok(["user", "delete", "ann"]).contains("deleted user ann"))
        #expect(try ok(["user", "list"]).isEmpty)
    }

    static let failureCases: [([String], Int32, String)] = [
        (["user", "list", "--storage", "path://host/x"], 64, "names a host"),
        (["user", "list", "--storage", "s3:bucket"], 64, "s3: needs 'locking'"),
        (["user", "show", "nobody"], 3, "user 'nobody' does not exist"),
        (["user", "delete", "nobody"], 3, "user 'nobody' does not exist"),
        (["txn", "add", "u", "--id", "t", "--amount", "1.234", "--currency", "EUR"], 64, "at most 2 digits"),
        (
            ["txn", "add", "u", "--id", "t", "--amount", "1", "--currency", "EURO"], 64,
            "expected an ISO 4217 currency code"
        ),
        (
            ["txn", "add", "u", "--id", "t", "--amount", "1", "--currency", "EUR", "--at", "yesterday"], 64,
            "ISO 8601"
        ),
        (["txn", "add", "", "--id", "t", "--amount", "1", "--currency", "EUR"], 64, "must not be empty"),
        (
            ["footprint", "add", "u", "--id", "f", "--kg", "lots", "--category", "c", "--methodology", "m"],
            64, "kilograms"
        ),
        (["file", "inspect", "/nonexistent/file.cstore"], 3, "/nonexistent/file.cstore does not exist"),
        (["file", "verify", "/nonexistent/file.cstore"], 3, "/nonexistent/file.cstore does not exist"),
        (["file", "inspect", "/"], 64, "is not a regular file"),
        (["verify", "--storage", "memory:", "--remove-temp-older-than", "1"], 64, "is for path: storage"),
        // A storage URI that cannot be used is named before the missing key.
        (["serve", "--storage", "bogus:"], 64, "unknown scheme 'bogus'"),
        (
            ["serve", "--storage", "memory:", "--host", "no-such-host.invalid"], 64,
            "--host 'no-such-host.invalid' is not an address"
        ),
        // Usage errors, which ArgumentParser finds, are one line too.
        (["user", "show"], 64, "Missing expected argument '<user>'"),
        (
            ["txn", "add", "u", "--id", "t", "--amount", "1", "--currency", "EUR", "--bogus"], 64,
            "Unknown option"
        ),
        (["file", "no-such-command"], 64, "Unexpected argument 'no-such-command'"),
    ]

    @Test(arguments: failureCases)
    func failuresAreOneLineWithExitCode(args: [String], status: Int32, message: String) throws {
        let dir = try TemporaryDirectory("cli-err")
        defer { dir.remove() }
        var args = args
        if !args.contains("--storage") && args[0] != "file" { args += ["--storage", "path:" + dir.path] }
        let out = try CommandRunner().run(args)
        #expect(out.status == status, "\(args): \(out.stderr)")
        #expect(out.stderr.hasPrefix("carbonstore: "))
        #expect(out.stderr.contains(message), "\(out.stderr)")
        #expect(out.stderr.split(separator: "\n").count == 1)
    }

    @Test func damagedFilesFailVerifyAndInspect() async throws {
        let dir = try TemporaryDirectory("cli-damage")
        defer { dir.remove() }
        let cli = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        #expect(try cli.run(["pref", "set", "zed", "k", "v"]).status == 0)
        #expect(try cli.run(["pref", "set", "yan", "k", "v"]).status == 0)
        let path = dir.path + "/" + (try UserKeys().key(for: "zed"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 3).write(to: URL(fileURLWithPath: path))

        let verify = try cli.run(["verify"])
        #expect(verify.status == 5)
        #expect(verify.stdout.contains("damaged: \(path)"))
        #expect(verify.stdout.contains("1 healthy, 1 damaged"))
        let inspect = try cli.run(["file", "inspect", path])
        #expect(inspect.status == 5 && inspect.stderr.contains("not a valid user file"))
        let show = try cli.run(["user", "show", "zed"])
        #expect(show.status == 5 && show.stderr.contains(path))
        // The damaged file is still there, untouched, after all of that.
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes.prefix(bytes.count - 3))
    }

    /// A user file larger than the engine reads (a sparse 10 GiB file in its place) is refused by
    /// every command with its real size, unread and untouched.
    @Test func aFileOverTheSizeLimitIsNamedWithItsSize() async throws {
        let dir = try TemporaryDirectory("cli-huge")
        defer { dir.remove() }
        let cli = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        #expect(try cli.run(["pref", "set", "zed", "k", "v"]).status == 0)
        let path = dir.path + "/" + (try UserKeys().key(for: "zed"))
        #expect(truncate(path, 10 << 30) == 0)
        for args in [["file", "inspect", path], ["file", "verify", path], ["user", "show", "zed"]] {
            let run = try cli.run(args)
            #expect(run.status == 5, "\(args): \(run.stderr)")
            #expect(
                run.stderr.contains("is \(10 << 30) bytes, over the 8388608-byte limit"),
                "\(args): \(run.stderr)")
        }
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_size == 10 << 30)
    }

    /// A damaged change frame with committed frames after it is damage for every command that
    /// looks at the file (exit 5), and a torn append is not: `verify`, `file verify` and `file
    /// inspect` tell them apart alike (docs/FORMAT.md, 13.4).
    @Test func damagedAndTornTailsAreToldApartByEveryCommand() async throws {
        let dir = try TemporaryDirectory("cli-tails")
        defer { dir.remove() }
        let cli = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        let path = dir.path + "/" + (try UserKeys().key(for: "zed"))
        // A damaged frame whose last byte is zero (its CRC's high byte, one frame in 256) reads as
        // torn (docs/FORMAT.md 13.4), and frame ids are random: the user is written anew until its
        // last frame ends with another byte.
        var listing: CommandRunner.Output
        var frames: [(offset: Int, length: Int)] = []
        var original = Data()
        var attempts = 0
        repeat {
            attempts += 1
            _ = try cli.run(["user", "delete", "zed"])
            for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
                #expect(try cli.run(["pref", "set", "zed", k, v]).status == 0)
            }
            listing = try cli.run(["file", "verify", path])
            #expect(listing.status == 0 && listing.stdout.contains(": ok"))
            frames = listing.stdout.split(separator: "\n").compactMap { line -> (Int, Int)? in
                guard line.hasPrefix("  frame "), let at = line.range(of: " at "),
                    let colon = line.range(of: ": ", range: at.upperBound..<line.endIndex)
                else { return nil }
                guard let offset = Int(line[at.upperBound..<colon.lowerBound]),
                    let length = Int(line[colon.upperBound...].prefix { $0.isNumber })
                else { return nil }
                return (offset, length)
            }
            original = try Data(contentsOf: URL(fileURLWithPath: path))
        } while frames.count == 2 && original[frames[1].offset + frames[1].length - 1] == 0 && attempts < 20
        #expect(frames.count == 2, "\(listing.stdout)")
        guard frames.count == 2 else { return }
        let frameStarts = frames.map(\.offset)

        // One byte of the first frame damaged: the second is committed after it.
        var damaged = original
        damaged[frameStarts[0] + 20] ^= 0xFF
        try damaged.write(to: URL(fileURLWithPath: path))
        let verify = try cli.run(["verify"])
        #expect(verify.status == 5 && verify.stdout.contains("not one torn append"))
        let fileVerify = try cli.run(["file", "verify", path])
        #expect(fileVerify.status == 5, "\(fileVerify.stdout)")
        #expect(fileVerify.stdout.contains("not one torn append") && fileVerify.stdout.contains("damaged"))
        #expect(!fileVerify.stdout.contains(": ok"))
        let inspect = try cli.run(["file", "inspect", path])
        #expect(inspect.status == 5 && inspect.stderr.contains("not one torn append"), "\(inspect.stderr)")
        #expect(inspect.stdout.contains("\"a\""), "the record before the damaged frame is printed")
        let show = try cli.run(["user", "show", "zed"])
        #expect(
            show.status == 0 && show.stderr.contains("warning:")
                && show.stderr.contains("not one torn append"))
        #expect(try cli.run(["pref", "set", "zed", "d", "4"]).status == 5)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == damaged, "nothing was written")

        // One byte of the LAST frame damaged, the frame whole on disk: an acknowledged change that
        // a crash cannot have torn (it reached the disk whole), so damage, never cut.
        var lastDamaged = original
        lastDamaged[frameStarts[1] + 20] ^= 0x01
        try lastDamaged.write(to: URL(fileURLWithPath: path))
        let lastVerify = try cli.run(["verify"])
        #expect(lastVerify.status == 5 && lastVerify.stdout.contains("not one torn append"), "\(lastVerify)")
        let lastFileVerify = try cli.run(["file", "verify", path])
        #expect(lastFileVerify.status == 5 && lastFileVerify.stdout.contains("not one torn append"))
        let lastShow = try cli.run(["user", "show", "zed"])
        #expect(lastShow.status == 0 && lastShow.stderr.contains("not one torn append"))
        #expect(try cli.run(["pref", "set", "zed", "d", "4"]).status == 5)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == lastDamaged, "nothing was written")

        // The last frame cut short (what a crash leaves of one append): not damage.
        try original.prefix(frameStarts[1] + 20).write(to: URL(fileURLWithPath: path))
        let tornVerify = try cli.run(["file", "verify", path])
        #expect(tornVerify.status == 0 && tornVerify.stdout.contains("a torn append"), "\(tornVerify.stdout)")
        #expect(tornVerify.stdout.contains(": ok"))
        let tornInspect = try cli.run(["file", "inspect", path])
        #expect(tornInspect.status == 0 && tornInspect.stderr.contains("a torn append"))
        #expect(try cli.run(["user", "show", "zed"]).stderr.isEmpty)
        #expect(try cli.run(["verify"]).status == 0)
    }

    /// `user show`, `user list` and `verify` only read: they create no data directory, and a
    /// directory the process may not write to (a read-only volume, a group's read access through
    /// `mode=`) is enough for them; writes there are refused with exit code 77.
    @Test func readingCommandsNeedNoWriteAccess() async throws {
        let dir = try TemporaryDirectory("cli-read-only")
        defer { dir.remove() }
        let missing = dir.path + "/never-written"
        let none = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + missing])
        let show = try none.run(["user", "show", "zed"])
        #expect(show.status == 3 && show.stderr.contains("does not exist"), "\(show.stderr)")
        let list = try none.run(["user", "list"])
        #expect(list.status == 0 && list.stdout.isEmpty)
        // A scrub of a directory that is not there must not pass for a healthy store.
        let scrub = try none.run(["verify"])
        #expect(
            scrub.status == 3 && scrub.stderr.contains("does not exist: nothing to verify"), "\(scrub.stderr)"
        )
        let removing = try none.run(["verify", "--remove-temp-older-than", "60"])
        #expect(removing.status == 3, "\(removing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: missing), "a reading command created the directory")

        // As another user, with read access through the group's mode and nothing more.
        guard Self.canRunAsNobody else { return }
        let data = dir.path + "/shared"
        let uri = "path:\(data)?mode=0644"
        let owner = try CommandRunner(environment: ["CARBONSTORE_STORAGE": uri])
        #expect(try owner.run(["pref", "set", "zed", "k", "v"]).status == 0)
        #expect(chmod(dir.path, 0o755) == 0)
        func asNobody(_ args: [String]) throws -> (status: Int32, stdout: String) {
            try Self.runAsNobody(owner, args, output: dir.path + "/nobody.out")
        }
        let nobodyShow = try asNobody(["user", "show", "zed", "--json"])
        #expect(nobodyShow.status == 0 && nobodyShow.stdout.contains("\"k\""))
        let nobodyList = try asNobody(["user", "list"])
        #expect(nobodyList.status == 0 && nobodyList.stdout == "zed\n")
        #expect(try asNobody(["verify"]).status == 0)
        #expect(try asNobody(["pref", "set", "zed", "k", "w"]).status == 77)
    }

    static let setpriv = "/usr/bin/setpriv"

    /// Whether this test process may run the command as the user `nobody` (it runs as root, and
    /// `setpriv` is there).
    static var canRunAsNobody: Bool {
        geteuid() == 0 && FileManager.default.isExecutableFile(atPath: setpriv)
    }

    /// Runs `owner`'s command with `args` as the user `nobody`: its exit status and standard output
    /// (through the file `output`, which the shell opens as this process's user).
    static func runAsNobody(_ owner: CommandRunner, _ args: [String], output: String) throws -> (
        status: Int32, stdout: String
    ) {
        let quoted =
            ([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", owner.executable] + args)
            .map(shellQuote).joined(separator: " ")
        let p = try runShell(quoted + " >\(shellQuote(output)) 2>/dev/null", environment: owner.environment)
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    /// `verify` goes on past a file it may not read (and says so, exit 77 when nothing is damaged),
    /// so that damage after it is still found; a user's file in another user's folder is named as
    /// such, with where it belongs.
    @Test func verifyGoesOnPastAFileItMayNotReadAndNamesAMisplacedOne() async throws {
        func copyfile(_ from: String, _ to: String) -> Bool {
            (try? FileManager.default.copyItem(atPath: from, toPath: to)) != nil
        }
        let dir = try TemporaryDirectory("cli-verify-unreadable")
        defer { dir.remove() }
        let data = dir.path + "/data"
        let owner = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:\(data)?mode=0644"])
        for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
            #expect(try owner.run(["pref", "set", user, "k", "v"]).status == 0)
        }
        func file(_ user: String) throws -> String { data + "/" + (try UserKeys().key(for: user)) }

        // A user's file moved into another user's folder: named, with where it belongs.
        let u6 = try file("u6")
        let elsewhere = URL(fileURLWithPath: try file("u1")).deletingLastPathComponent().path + "/u6.cstore"
        #expect(rename(u6, elsewhere) == 0)
        let misplaced = try owner.run(["verify"])
        #expect(misplaced.status == 5, "\(misplaced)")
        #expect(
            misplaced.stdout.contains(
                "damaged: \(elsewhere): the file is named for user 'u6' and holds that user's record (revision 1), but belongs at \(u6), not in this folder"
            ), "\(misplaced.stdout)")
        #expect(rename(elsewhere, u6) == 0)
        // A copy of another user's file under u6's name: named as such, never "move it".
        #expect(copyfile(try file("u1"), elsewhere))
        let copied = try owner.run(["verify"])
        #expect(
            copied.stdout.contains(
                "the file is named for user 'u6' but holds the record of user 'u1' (revision 1): a copy made by hand"
            ),
            "\(copied.stdout)")
        #expect(unlink(elsewhere) == 0)

        guard Self.canRunAsNobody else { return }
        #expect(chmod(dir.path, 0o755) == 0)
        func asNobody(_ args: [String]) throws -> (status: Int32, stdout: String) {
            try Self.runAsNobody(owner, args, output: dir.path + "/nobody.out")
        }
        #expect(try asNobody(["verify"]).status == 0)
        // u2 may not be read; u5 is damaged (its first bytes overwritten).
        #expect(chmod(try file("u2"), 0) == 0)
        let handle = try #require(FileHandle(forWritingAtPath: try file("u5")))
        try handle.write(contentsOf: Data(repeating: 0x5A, count: 16))
        try handle.close()
        let both = try asNobody(["verify"])
        #expect(both.status == 5, "\(both.stdout)")
        #expect(
            both.stdout.contains("unreadable: \(try file("u2")): ")
                && both.stdout.contains("Permission denied"))
        #expect(both.stdout.contains("damaged: \(try file("u5")): "), "\(both.stdout)")
        #expect(both.stdout.contains("4 healthy, 1 damaged, 1 unreadable"), "\(both.stdout)")
        // Without the damage: the file that could not be read is a permission problem (77).
        #expect(try owner.run(["user", "delete", "u5"]).status == 0)
        let unreadable = try asNobody(["verify"])
        #expect(unreadable.status == 77 && unreadable.stdout.contains("4 healthy, 0 damaged, 1 unreadable"))
        // A misplaced file that may not be read is unreadable too, not damaged.
        #expect(copyfile(try file("u1"), elsewhere) && chmod(elsewhere, 0o600) == 0)
        let both77 = try asNobody(["verify"])
        #expect(
            both77.status == 77 && both77.stdout.contains("unreadable: \(elsewhere): "), "\(both77.stdout)")
        #expect(both77.stdout.contains("4 healthy, 0 damaged, 2 unreadable"), "\(both77.stdout)")
        // A folder that may not be read: named, and the scrub goes on past it.
        #expect(unlink(elsewhere) == 0)
        let u3Folder = URL(fileURLWithPath: try file("u3")).deletingLastPathComponent().path
        #expect(chmod(u3Folder, 0) == 0)
        let folder = try asNobody(["verify"])
        #expect(folder.status == 77, "\(folder.stdout)")
        #expect(folder.stdout.contains("unreadable: \(u3Folder): open directory"), "\(folder.stdout)")
        #expect(folder.stdout.contains("3 healthy, 0 damaged, 2 unreadable"), "\(folder.stdout)")
        #expect(chmod(u3Folder, 0o755) == 0)
    }

    @Test func demoRunsOnTheEmbeddedDefaultAndIsRepeatable() throws {
        let dir = try TemporaryDirectory("cli-demo")
        defer { dir.remove() }
        let cli = try CommandRunner()
        for _ in 0..<2 {
            let out = try runShell(
                "cd \(shellQuote(dir.path)) && \(shellQuote(cli.executable)) demo",
                environment: cli.environment)
            out.waitUntilExit()
            #expect(out.terminationStatus == 0)
        }
        #expect(
            FileManager.default.fileExists(
                atPath: dir.path + "/carbonstore-data/" + (try UserKeys().key(for: "demo-user"))))
    }
}
