import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

/// What the tool accepts and how it prints it: negative amounts, currencies, hostile ids, totals
/// beyond 64 bits, the old storage variable and the exit code of a permission error.
@Suite(.serialized) struct InputOutputTests {
    static let nfc = "caf\u{E9}"
    static let nfd = "cafe\u{301}"

    /// A runner on a fresh `path:` directory.
    func cli(_ label: String) throws -> (CommandRunner, TemporaryDirectory) {
        let dir = try TemporaryDirectory(label)
        return (try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path]), dir)
    }

    func record(_ dir: TemporaryDirectory, _ user: String) async throws -> UserRecord {
        try await StoreFactory().makeStore("path:" + dir.path).get(user)
    }

    @Test func negativeAmountsAreReadAsValuesWithASpace() async throws {
        let (cli, dir) = try cli("cli-negative")
        defer { dir.remove() }
        let txn = try cli.run(["txn", "add", "u", "--id", "refund", "--amount", "-5", "--currency", "EUR"])
        #expect(txn.status == 0, "\(txn.stderr)")
        let footprint = try cli.run([
            "footprint", "add", "u", "--id", "f", "--kg", "-1.25", "--category", "c", "--methodology", "m",
        ])
        #expect(footprint.status == 0, "\(footprint.stderr)")
        let saving = try cli.run([
            "saving", "add", "u", "--id", "s", "--action", "a", "--kg", "-2", "--money", "-4.20",
            "--currency",
            "EUR", "--period-start", "2026-01-01", "--period-end", "2026-02-01",
        ])
        #expect(saving.status == 0, "\(saving.stderr)")
        let r = try await record(dir, "u")
        #expect(r.transactions.map(\.amount.minorUnits) == [-500])
        #expect(r.footprints.map(\.co2e.milligrams) == [-1_250_000])
        #expect(r.savings.map(\.co2e.milligrams) == [-2_000_000])
        #expect(r.savings.first?.moneySaved?.minorUnits == -420)
    }

    @Test func currenciesAreCheckedAgainstISO4217() async throws {
        let (cli, dir) = try cli("cli-currency")
        defer { dir.remove() }
        func add(_ amount: String, _ currency: String) throws -> CommandRunner.Output {
            try cli.run([
                "txn", "add", "u", "--id", "t-\(currency)", "--amount", amount, "--currency", currency,
            ])
        }
        for (currency, message) in [
            ("ABC", "not an active ISO 4217 currency"), ("HRK", "not an active ISO 4217 currency"),
            ("XAU", "has no minor unit"), ("EU", "three letters"),
        ] {
            let out = try add("1", currency)
            #expect(out.status == 64, "\(currency): \(out.stderr)")
            #expect(out.stderr.contains(message), "\(currency): \(out.stderr)")
            #expect(out.stderr.split(separator: "\n").count == 1)
        }
        // The minor units come from the list: none for ISK, three for TND, four for CLF.
        let isk = try add("1.5", "isk")
        #expect(isk.status == 64 && isk.stderr.contains("at most 0 digits"), "\(isk.stderr)")
        #expect(try add("1500", "ISK").status == 0)
        #expect(try add("1.234", "TND").status == 0)
        #expect(try add("0.0001", "CLF").status == 0)
        let saving = try cli.run([
            "saving", "add", "u", "--id", "s", "--action", "a", "--kg", "1", "--money", "1", "--currency",
            "XYZ",
            "--period-start", "2026-01-01", "--period-end", "2026-02-01",
        ])
        #expect(saving.status == 64 && saving.stderr.contains("not an active ISO 4217 currency"))
        let r = try await record(dir, "u")
        #expect(r.transactions.map(\.amount.description).sorted() == ["0.0001 CLF", "1.234 TND", "1500 ISK"])
    }

    @Test func bothSpellingsOfAnIDAreKeptApart() async throws {
        let (cli, dir) = try cli("cli-nfd")
        defer { dir.remove() }
        func ok(_ args: [String]) throws -> String {
            let out = try cli.run(args)
            #expect(out.status == 0, "\(args): \(out.stderr)")
            return out.stdout
        }
        let at = ["--at", "2026-03-01T12:00:00Z"]
        #expect(
            try ok(
                [
                    "txn", "add", "u", "--id", Self.nfc, "--amount", "1", "--currency", "EUR", "--meta",
                    Self.nfc + "=1", "--meta", Self.nfd + "=2",
                ] + at
            )
            .hasPrefix("added"))
        #expect(
            try ok(["txn", "add", "u", "--id", Self.nfd, "--amount", "2", "--currency", "EUR"] + at)
                .hasPrefix("added"))
        #expect(try ok(["pref", "set", "u", Self.nfc, "1"]).hasPrefix("added"))
        #expect(try ok(["pref", "set", "u", Self.nfd, "2"]).hasPrefix("added"))
        // A value re-spelled is a change, and is written.
        #expect(try ok(["pref", "set", "u", "k", Self.nfc]).hasPrefix("added"))
        #expect(try ok(["pref", "set", "u", "k", Self.nfd]).hasPrefix("replaced"))
        #expect(try ok(["answer", "u", Self.nfc, "yes"]).hasPrefix("added"))
        #expect(try ok(["answer", "u", Self.nfd, "no"]).hasPrefix("added"))
        let r = try await record(dir, "u")
        #expect(r.transactions.count == 2 && r.preferences.count == 3 && r.responses.count == 2)
        #expect(r.transaction(id: Self.nfd)?.amount.minorUnits == 200)
        let metadata = r.transaction(id: Self.nfc)?.metadata
        #expect(metadata?.count == 2 && metadata?[Self.nfc] == "1" && metadata?[Self.nfd] == "2")
        #expect(r.preferences[Self.nfc]?.value == "1" && r.preferences[Self.nfd]?.value == "2")
        #expect(r.preferences["k"].map { Array($0.value.utf8) } == Array(Self.nfd.utf8))
        #expect(r.revision == 8)
        #expect(try ok(["pref", "unset", "u", Self.nfd]).hasPrefix("removed"))
        #expect(try await record(dir, "u").preferences[Self.nfc]?.value == "1")
    }

    @Test func jsonViewsShowBothSpellingsOfAKey() async throws {
        let (cli, dir) = try cli("cli-nfd-json")
        defer { dir.remove() }
        func ok(_ args: [String]) throws -> String {
            let out = try cli.run(args)
            #expect(out.status == 0, "\(args): \(out.stderr)")
            return out.stdout
        }
        _ = try ok([
            "txn", "add", "u", "--id", "t", "--amount", "1", "--currency", "EUR", "--meta", Self.nfc + "=1",
            "--meta", Self.nfd + "=2", "--at", "2026-03-01T12:00:00Z",
        ])
        _ = try ok(["pref", "set", "u", Self.nfc, "3"])
        _ = try ok(["pref", "set", "u", Self.nfd, "4"])
        let stored = try await record(dir, "u")
        /// How often the text holds these bytes.
        func count(_ text: String, _ needle: String) -> Int {
            let (bytes, needle) = (Array(text.utf8), Array(needle.utf8))
            guard bytes.count >= needle.count else { return 0 }
            return (0...(bytes.count - needle.count)).count {
                bytes[$0..<($0 + needle.count)].elementsEqual(needle)
            }
        }
        let show = try ok(["user", "show", "u", "--json"])
        let inspect = try ok(["file", "inspect", dir.path + "/" + (try UserKeys().key(for: "u"))])
        for view in [show, inspect] {
            // Metadata members, then preference members (objects), each spelling once.
            for key in [Self.nfc, Self.nfd] {
                #expect(count(view, "\"\(key)\" : \"") == 1 && count(view, "\"\(key)\" : {") == 1, "\(view)")
            }
            #expect(try RecordJSON.decode(UserRecord.self, from: view) == stored)
        }
        #expect(show == inspect)
    }

    @Test func hostileIDsAreEscapedInHumanOutputOnly() throws {
        let (cli, dir) = try cli("cli-escape")
        defer { dir.remove() }
        let user = "eve\u{1B}[2J\n\u{202E}x\\"
        let shown = #"eve\u{1B}[2J\u{A}\u{202E}x\\"#
        let set = try cli.run(["pref", "set", user, "k\u{7}", "v"])
        #expect(set.status == 0, "\(set.stderr)")
        #expect(set.stdout == "added preference k\\u{7} of \(shown) (revision 1)\n")
        let list = try cli.run(["user", "list"])
        #expect(list.stdout == shown + "\n")
        let show = try cli.run(["user", "show", user])
        #expect(show.stdout.hasPrefix("user \(shown)\n"))
        for out in [set, list, show] {
            #expect(!out.stdout.contains("\u{1B}") && !out.stdout.contains("\u{202E}"))
        }
        // JSON stays exact: the id decodes back to the same bytes.
        let json = try cli.run(["user", "show", user, "--json"])
        let record = try JSONDecoder().decode(UserRecord.self, from: Data(json.stdout.utf8))
        #expect(record.userID.isByteEqual(to: user))
        #expect(record.preferences["k\u{7}"]?.value == "v")
        // Errors quoting an id: one line, no raw control characters.
        let missing = try cli.run(["user", "show", "nobody\u{1B}]0;pwned\u{7}"])
        #expect(missing.status == 3)
        #expect(missing.stderr == "carbonstore: user 'nobody\\u{1B}]0;pwned\\u{7}' does not exist\n")
        let delete = try cli.run(["user", "delete", user])
        #expect(delete.stdout == "deleted user \(shown)\n")
    }

    @Test func totalsBeyond64BitsAreExact() throws {
        let (cli, dir) = try cli("cli-totals")
        defer { dir.remove() }
        let maxCents = "92233720368547758.07"  // Int64.max minor units
        let maxKg = "9223372036854.775807"  // Int64.max milligrams
        for id in ["a", "b"] {
            #expect(
                try cli.run(["txn", "add", "u", "--id", id, "--amount", maxCents, "--currency", "EUR"]).status
                    == 0)
            #expect(
                try cli.run(["txn", "add", "u", "--id", "y" + id, "--amount", "-1", "--currency", "JPY"])
                    .status == 0)
            let fp = try cli.run([
                "footprint", "add", "u", "--id", id, "--kg", maxKg, "--category", "c", "--methodology", "m",
            ])
            #expect(fp.status == 0, "\(fp.stderr)")
            let saving = try cli.run([
                "saving", "add", "u", "--id", id, "--action", "a", "--kg", "-" + maxKg,
                "--period-start", "2026-01-01", "--period-end", "2026-02-01",
            ])
            #expect(saving.status == 0, "\(saving.stderr)")
        }
        let show = try cli.run(["user", "show", "u"])
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("\n  spent 184467440737095516.14 EUR\n"), "\(show.stdout)")
        #expect(show.stdout.contains("\n  spent -2 JPY\n"), "\(show.stdout)")
        #expect(show.stdout.contains("\n  footprint 18446744073709.551614 kg CO2e\n"), "\(show.stdout)")
        #expect(show.stdout.contains("\n  saved -18446744073709.551614 kg CO2e"), "\(show.stdout)")
    }

    @Test func theOldStorageVariableIsAFallbackWithANotice() async throws {
        let old = try TemporaryDirectory("cli-cogo-old")
        let new = try TemporaryDirectory("cli-cogo-new")
        let flag = try TemporaryDirectory("cli-cogo-flag")
        defer { [old, new, flag].forEach { $0.remove() } }
        // Only the old name: used, with a one-line notice on stderr.
        let fallback = try CommandRunner(environment: ["COGO_STORAGE": "path:" + old.path])
        let out = try fallback.run(["pref", "set", "ann", "k", "v"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stderr.contains("COGO_STORAGE is deprecated"), "\(out.stderr)")
        #expect(out.stderr.contains("CARBONSTORE_STORAGE"))
        #expect(out.stderr.split(separator: "\n").count == 1)
        #expect(try await StoreFactory().makeStore("path:" + old.path).get("ann").revision == 1)
        // Both: the new name wins, silently.
        let both = try CommandRunner(environment: [
            "COGO_STORAGE": "path:" + old.path, "CARBONSTORE_STORAGE": "path:" + new.path,
        ])
        let second = try both.run(["pref", "set", "bob", "k", "v"])
        #expect(second.status == 0 && second.stderr.isEmpty, "\(second.stderr)")
        #expect(try await StoreFactory().makeStore("path:" + new.path).get("bob").revision == 1)
        // --storage wins over both.
        let third = try both.run(["pref", "set", "cy", "k", "v", "--storage", "path:" + flag.path])
        #expect(third.status == 0 && third.stderr.isEmpty, "\(third.stderr)")
        #expect(try await StoreFactory().makeStore("path:" + flag.path).get("cy").revision == 1)
        // One user file in each: nothing went to the wrong place.
        for d in [old, new, flag] {
            #expect(d.allFiles().filter { $0.hasSuffix(".cstore") }.count == 1, "\(d.allFiles())")
        }
    }

    @Test func aPermissionErrorExitsWithTheDocumentedCode() throws {
        let dir = try TemporaryDirectory("cli-perm")
        defer { dir.remove() }
        let data = dir.path + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: false)
        let seed = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + data])
        #expect(try seed.run(["pref", "set", "ann", "k", "v"]).status == 0)
        // Root's data directory, closed to the user that runs the tool (when not root: closed to all).
        try FileManager.default.setAttributes(
            [.posixPermissions: getuid() == 0 ? 0o700 : 0o000], ofItemAtPath: data)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: data) }
        for args in [
            ["pref", "set", "ann", "k", "w"], ["user", "show", "ann"], ["pref", "set", "bob", "k", "v"],
        ] {
            let out = try runAsAnotherUser(seed, args + ["--storage", "path:" + data])
            #expect(out.status == 77, "\(args): \(out.stderr)")
            #expect(out.stderr.contains("Permission denied"), "\(args): \(out.stderr)")
            #expect(out.stderr.hasPrefix("carbonstore: ") && out.stderr.split(separator: "\n").count == 1)
        }
    }

    /// Runs the tool as an unprivileged user: as `nobody` through setpriv when the tests run as
    /// root (root is never refused), else as the current user.
    func runAsAnotherUser(_ runner: CommandRunner, _ args: [String]) throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        guard getuid() == 0 else {
            let out = try runner.run(args)
            return (out.status, out.stdout, out.stderr)
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", runner.executable] + args
        p.environment = runner.environment
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (
            p.terminationStatus, String(decoding: stdout, as: UTF8.self),
            String(decoding: stderr, as: UTF8.self)
        )
    }
}

extension InputOutputTests {
    @Test func aNegativeAnswerFollowsADoubleDash() async throws {
        let (cli, dir) = try cli("cli-answer")
        defer { dir.remove() }
        let out = try cli.run(["answer", "u", "q", "--", "-3"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(try await record(dir, "u").responses.first?.answer == .number(-3))
    }
}
