import ArgumentParser
import ControlSocket
import Foundation
import KMSNode
import KMSSettings
import NIOPosix

/// `kms ctl`: the operator's tool over a running node's control socket, in the spirit of
/// `knotc` and `unbound-control`. Every subcommand prints a human line (or table) by default
/// and the node's JSON answer with --json.
struct Ctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Control a running KMS node: status, stats, hosts, remove, flush, reload, conf-check.",
        discussion: """
            Talks to the node's local control socket (`control` in its configuration; by \
            default the database path plus `.control`), which only the node's user can open. \
            Registering is `kms ctl register` (= `kms register`; one host, or --file for many). To check a \
            configuration without starting it: `kms ctl conf-check FILE` (or `kmsd --check FILE`).

            Examples (after `make run`):
              kms ctl status --node hierarchy/c.a.xx.conf
              kms ctl stats --node hierarchy/xx.conf
              kms ctl hosts 'host*' --node hierarchy/c.a.xx.conf
              kms ctl remove hostc.c.a.xx. --node hierarchy/c.a.xx.conf
              kms ctl flush --all --node hierarchy/b.a.xx.conf

            Exit codes: 0 done; 65 the node refused (the reason is printed); 69 the node cannot \
            be reached; 78 configuration.
            """,
        subcommands: [Status.self, Stats.self, Hosts.self, Register.self, Remove.self, Flush.self, Reload.self, ConfCheck.self])

    /// Where the node is, and how to print.
    struct Target: ParsableArguments {
        @Option(help: "The node's configuration file (to find its control socket).")
        var node: String?

        @Option(help: "The node's control socket.")
        var control: String?

        @Flag(help: "Print the node's answer as JSON.")
        var json = false

        func validate() throws {
            guard (node == nil) != (control == nil) else {
                throw ValidationError("give exactly one of --node CONFIG or --control SOCKET")
            }
        }

        /// Sends `request`; prints JSON, or returns the answer for the caller to print. Exits on failure.
        func send(_ request: NodeControl.Request) async -> NodeControl.Response {
            let socket: String
            if let control {
                socket = control
            } else {
                do { socket = try ConfigFile(path: node!).nodeControlSocket() } catch { Ctl.exit("\(error)", code: 78) }
            }
            let response: NodeControl.Response
            do {
                response = try await ControlSocket.send(
                    request, expecting: NodeControl.Response.self, to: socket, group: MultiThreadedEventLoopGroup.singleton)
            } catch let error as ControlSocket.Failure {
                Ctl.exit("cannot reach the node at \(socket): \(error.reason) (is kmsd running?)", code: 69)
            } catch {
                Ctl.exit("cannot reach the node at \(socket): \(error) (is kmsd running?)", code: 69)
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: (try? encoder.encode(response)) ?? Data(), as: UTF8.self))
                if !response.ok { Foundation.exit(65) }
            } else if !response.ok {
                Ctl.exit(response.message, code: 65)
            }
            return response
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The node's zone, serial, hosts, caches, neighbours.")
        @OptionGroup var target: Target

        func run() async throws {
            let response = await target.send(NodeControl.Request(op: "status"))
            guard !target.json else { return }
            let fields = response.fields ?? []
            let width = fields.map { $0.first?.count ?? 0 }.max() ?? 0
            for field in fields where field.count == 2 {
                print("\(field[0].padding(toLength: width, withPad: " ", startingAt: 0))  \(field[1].isEmpty ? "-" : field[1])")
            }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Counters since start: requests by kind, responses by code, cache, throttling, countersignatures, log size.")
        @OptionGroup var target: Target

        func run() async throws {
            let response = await target.send(NodeControl.Request(op: "stats"))
            guard !target.json else { return }
            for field in response.fields ?? [] where field.count == 2 { print("\(field[0]) \(field[1])") }
        }
    }

    struct ConfCheck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "conf-check",
            abstract: "Check node configuration files (every directive, key files, the TSIG key) without a node; as `kmsd --check`.")
        @Argument(help: "Node configuration files.")
        var files: [String]

        func run() async throws {
            var failed = false
            for file in files {
                do {
                    let configuration = try NodeConfiguration(path: file)
                    print("\(file): ok (zone \(configuration.zone), listen \(configuration.listen), \(configuration.hosts.count) host lines)")
                } catch {
                    FileHandle.standardError.write(Data("kms ctl: \(error)\n".utf8))
                    failed = true
                }
            }
            if failed { Foundation.exit(78) }
        }
    }

    struct Hosts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The registered hosts: name, key, addresses.")
        @Argument(help: "Only names matching this shell pattern (like 'host*' or '*.c.a.xx.').")
        var pattern: String?
        @OptionGroup var target: Target

        func run() async throws {
            let response = await target.send(NodeControl.Request(op: "hosts"))
            guard !target.json else { return }
            let hosts = (response.hosts ?? []).filter { line in
                guard let pattern, let name = line.split(separator: " ").first else { return true }
                return fnmatch(pattern, String(name), 0) == 0
            }
            for line in hosts { print(line) }
            FileHandle.standardError.write(Data("\(hosts.count) of \(response.hosts?.count ?? 0) hosts\n".utf8))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a host: durable when acknowledged; its key is no longer served, cached or published.")
        @Argument(help: "The host's name, absolute and lower case.")
        var name: String
        @OptionGroup var target: Target

        func run() async throws {
            let response = await target.send(NodeControl.Request(op: "remove", name: name))
            if !target.json { print(response.message) }
        }
    }

    struct Flush: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Forget cached keys (of NAME, or --all), so they are fetched afresh.")
        @Argument(help: "The name whose cached keys to forget.")
        var name: String?
        @Flag(help: "Forget every cached key.")
        var all = false
        @OptionGroup var target: Target

        func validate() throws {
            guard (name == nil) == all else { throw ValidationError("give a NAME or --all") }
        }

        func run() async throws {
            let response = await target.send(NodeControl.Request(op: "flush", name: name))
            if !target.json { print(response.message) }
        }
    }

    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What SIGHUP does: policy, registrations from the store, caches emptied.")
        @OptionGroup var target: Target

        func run() async throws {
            let response = await target.send(NodeControl.Request(op: "reload"))
            if !target.json { print(response.message) }
        }
    }

    static func exit(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("kms ctl: \(message)\n".utf8))
        Foundation.exit(code)
    }
}
