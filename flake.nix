{
  description = "stair-stepper: why Python service memory climbs in stair steps, and what the allocator does";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";

  # Thin glue only: every decision lives in the Python package. The flake pins
  # Python, glibc and the allocators (flake.lock), builds the package, and hands
  # the allocator library paths to it through the environment variables that
  # stair_stepper/allocators.py reads.
  outputs =
    { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      # LD_PRELOAD allocators are a Linux matter; macOS is not supported.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Each output sees only the files it needs, so editing the README rebuilds nothing.
      source =
        files:
        lib.fileset.toSource {
          root = ./.;
          fileset = lib.fileset.unions files;
        };
      packageFiles = [
        ./pyproject.toml
        ./src
      ];
      workloadFiles = [
        ./benchmark.yml
        ./plans
      ];
      packageSrc = source packageFiles;
      workloadSrc = source workloadFiles;
      # The tests also read the flake and its lock, run the examples (--app, --command),
      # check the README's published tables against the result folders in docs/, and check
      # that every `./dev` command the docs quote is one of ./dev's.
      testSrc = source (
        packageFiles
        ++ workloadFiles
        ++ [
          ./tests
          ./bench
          ./examples
          ./flake.nix
          ./flake.lock
          ./README.md
          ./docs
          ./dev
        ]
      );

      perSystem =
        pkgs:
        let
          python = pkgs.python3;
          runtimeDeps = ps: [
            ps.quart
            ps.hypercorn
            ps.pyyaml
            ps.aiohttp
            ps.psutil
            ps.matplotlib
          ];
          # stair-stepper built for one interpreter of the pin: the package, and an environment
          # whose interpreter imports it (a variant's python=PATH names that interpreter).
          buildFor =
            py:
            let
              library = py.pkgs.buildPythonPackage {
                pname = "stair-stepper";
                # the one version, pyproject.toml's (builtins.fromTOML: a Nix builtin since 2.3)
                version = (builtins.fromTOML (builtins.readFile ./pyproject.toml)).project.version;
                pyproject = true;
                src = packageSrc;
                build-system = [ py.pkgs.setuptools ];
                dependencies = runtimeDeps py.pkgs;
                pythonImportsCheck = [
                  "stair_stepper"
                  "stair_stepper.analysis.summary"
                ];
              };
            in
            {
              inherit library;
              # nixpkgs wraps its console script like every Python application (wrap.sh): a bare
              # interpreter that adds the site dirs inside the script, no PYTHONPATH. The
              # package's own children carry its import path (src/stair_stepper/selfexec.py).
              app = py.pkgs.toPythonApplication library;
              interpreter = "${py.withPackages (ps: runtimeDeps ps ++ [ library ])}/bin/python";
            };
          main = buildFor python;
          library = main.library;
          app = main.app;
          # The Pythons a variant can run its server under (python=PATH), each built with
          # stair-stepper: the pin's python3, and one older.
          pythons = {
            python3 = main;
            python312 = buildFor pkgs.python312;
          };

          # The allocator libraries of the pinned nixpkgs, in the variables the service reads,
          # and the pin itself (meta.json records it only when this variable says the run went
          # through the flake).
          libraryEnv = ''
            export STAIR_STEPPER_JEMALLOC="''${STAIR_STEPPER_JEMALLOC:-${pkgs.jemalloc}/lib/libjemalloc.so}"
            export STAIR_STEPPER_MIMALLOC="''${STAIR_STEPPER_MIMALLOC:-${pkgs.mimalloc}/lib/libmimalloc.so}"
            export STAIR_STEPPER_TCMALLOC="''${STAIR_STEPPER_TCMALLOC:-${pkgs.gperftools}/lib/libtcmalloc.so}"
            export STAIR_STEPPER_TBBMALLOC="''${STAIR_STEPPER_TBBMALLOC:-${pkgs.tbb_2022}/lib/libtbbmalloc_proxy.so}"
            export STAIR_STEPPER_NIXPKGS_REV="${nixpkgs.rev or "unknown"}"
            export STAIR_STEPPER_PYTHON_3="${pythons.python3.interpreter}"
            export STAIR_STEPPER_PYTHON_312="${pythons.python312.interpreter}"
          '';
          # Installed commands run anywhere, so they default to the flake's copy of the workload;
          # the dev shell does not: there the checkout's benchmark.yml is what runs.
          workloadEnv = ''
            export STAIR_STEPPER_BENCHMARK="''${STAIR_STEPPER_BENCHMARK:-${workloadSrc}/benchmark.yml}"
          '';
          command =
            name: args:
            pkgs.writeShellScriptBin name ''
              ${libraryEnv}
              ${workloadEnv}
              exec ${app}/bin/stair-stepper ${args} "$@"
            '';
          # `nix profile install .` gets this: the command that knows the pinned libraries.
          stair-stepper = command "stair-stepper" "";
          serveVariant = allocator: command "stair-stepper-${allocator}" "serve --allocator ${allocator}";
          variants = lib.genAttrs [
            "glibc"
            "jemalloc"
            "mimalloc"
            "tcmalloc"
            "tbbmalloc"
          ] serveVariant;
          experiment = command "stair-stepper-experiment" "experiment";
          # The default run with every built-in variant once more under the older Python: the
          # same allocators, the interpreter as the one thing changed.
          experimentPython312 =
            command "stair-stepper-experiment-python312"
              ''experiment --variant "glibc-py312=glibc python=${pythons.python312.interpreter}" --variant "jemalloc-bg-py312=jemalloc MALLOC_CONF=background_thread:true python=${pythons.python312.interpreter}"'';
          toApp = drv: name: description: {
            type = "app";
            program = "${drv}/bin/${name}";
            meta.description = description;
          };
          devPython = python.withPackages (
            ps:
            runtimeDeps ps
            ++ [
              ps.pytest
              ps.pytest-xdist
              ps.gunicorn
              ps.uvicorn
            ]
          );

          # drill 0.8.3 and 0.9.0 build their latency histogram with bounds 1..3,600,000 while
          # recording microseconds (compute_stats in src/main.rs), so one request slower than
          # about 4.2 s makes --stats panic at the end of a run and the whole run's statistics
          # are lost. Our service's large requests come close; raise the bound to an hour in
          # microseconds, but only where the source still has the old bound: a pin whose drill
          # carries upstream's fix (an hour in microseconds already) must build unpatched, and
          # --replace-fail on a line that is gone would fail the build and every output with it
          # (tests/unit/test_flake_drill.py runs this against each known source line).
          drill = pkgs.drill.overrideAttrs (old: {
            postPatch = (old.postPatch or "") + ''
              if grep -qF 'new_with_bounds(1, 60 * 60 * 1000, 2)' src/main.rs; then
                substituteInPlace src/main.rs --replace-fail \
                  "new_with_bounds(1, 60 * 60 * 1000, 2)" "new_with_bounds(1, 60 * 60 * 1000 * 1000, 2)"
              fi
            '';
          });
        in
        {
          packages = variants // {
            default = stair-stepper;
            inherit stair-stepper experiment drill;
            experiment-python312 = experimentPython312;
          };

          apps =
            lib.mapAttrs (
              name: drv: toApp drv "stair-stepper-${name}" "serve the widget service on ${name}"
            ) variants
            // {
              default = toApp experiment "stair-stepper-experiment" "run the allocator experiment";
              experiment = toApp experiment "stair-stepper-experiment" "run the allocator experiment";
              experiment-python312 =
                toApp experimentPython312 "stair-stepper-experiment-python312"
                  "the experiment, with glibc and jemalloc+bg once more under python312";
            };

          devShells.default = pkgs.mkShell {
            packages = [
              devPython
              pkgs.ruff
              drill
              pkgs.jemalloc
              pkgs.mimalloc
              pkgs.gperftools
              pkgs.tbb_2022
              pkgs.nixfmt-tree
            ];
            shellHook = ''
              ${libraryEnv}
              # The checkout itself, live: src/ on PYTHONPATH and a `stair-stepper` command for
              # it in .nix-dev/bin.
              export PYTHONPATH="$PWD/src''${PYTHONPATH:+:$PYTHONPATH}"
              mkdir -p .nix-dev/bin
              printf '#!/bin/sh\nexec python -m stair_stepper "$@"\n' > .nix-dev/bin/stair-stepper
              chmod +x .nix-dev/bin/stair-stepper
              export PATH="$PWD/.nix-dev/bin:$PATH"
              echo "stair-stepper dev shell (pinned nixpkgs ${nixpkgs.rev or "unknown"}):" >&2
              echo "  stair-stepper serve --allocator jemalloc    # serve a variant on localhost:3000" >&2
              echo "  drill --benchmark benchmark.yml --stats     # load it with real drill (another shell)" >&2
              echo "  stair-stepper experiment                    # the main job, on this checkout's workload" >&2
            '';
          };

          checks = {
            package = app;
            # The whole suite, ruff included (tests/test_style.py uses the ruff command on PATH),
            # with the patched drill for the tests that need real drill. Tests that cannot run in
            # the build sandbox say why in pytest's summary (-ra); the README lists them.
            tests =
              pkgs.runCommand "stair-stepper-tests"
                {
                  nativeBuildInputs = [
                    devPython
                    pkgs.ruff
                    drill
                  ];
                }
                ''
                  cp -r ${testSrc} work && chmod -R u+w work && cd work
                  patchShebangs tests/fakes
                  ${libraryEnv}
                  ${workloadEnv}
                  export HOME="$TMPDIR" PYTHONPATH="${library}/${python.sitePackages}"
                  python -m pytest -q -p no:cacheprovider
                  touch "$out"
                '';
            ruff = pkgs.runCommand "stair-stepper-ruff" { nativeBuildInputs = [ pkgs.ruff ]; } ''
              cd ${testSrc}
              ruff check --no-cache .
              ruff format --check --no-cache .
              touch "$out"
            '';
          };

          # Since Nix 2.25 `nix fmt` passes no paths, and bare nixfmt would wait on stdin;
          # nixfmt-tree formats the whole tree.
          formatter = pkgs.nixfmt-tree;
        };

      outputsBySystem = forAllSystems perSystem;
      pick = attr: lib.mapAttrs (_: outputs: outputs.${attr}) outputsBySystem;
    in
    {
      packages = pick "packages";
      apps = pick "apps";
      devShells = pick "devShells";
      checks = pick "checks";
      formatter = pick "formatter";
    };
}
