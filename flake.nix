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
        ./analysis
      ];
      workloadFiles = [
        ./benchmark.yml
        ./plans
      ];
      packageSrc = source packageFiles;
      workloadSrc = source workloadFiles;
      # The tests also read the flake and its lock.
      testSrc = source (
        packageFiles
        ++ workloadFiles
        ++ [
          ./tests
          ./bench
          ./flake.nix
          ./flake.lock
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
            ps.matplotlib
          ];
          library = python.pkgs.buildPythonPackage {
            pname = "stair-stepper";
            version = "0.1.0";
            pyproject = true;
            src = packageSrc;
            build-system = [ python.pkgs.setuptools ];
            dependencies = runtimeDeps python.pkgs;
            pythonImportsCheck = [
              "stair_stepper"
              "stair_stepper.analysis.summary"
            ];
          };
          app = python.pkgs.toPythonApplication library;

          # The allocator libraries of the pinned nixpkgs, in the variables the service reads.
          allocatorEnv = ''
            export STAIR_STEPPER_JEMALLOC="''${STAIR_STEPPER_JEMALLOC:-${pkgs.jemalloc}/lib/libjemalloc.so}"
            export STAIR_STEPPER_MIMALLOC="''${STAIR_STEPPER_MIMALLOC:-${pkgs.mimalloc}/lib/libmimalloc.so}"
            export STAIR_STEPPER_TCMALLOC="''${STAIR_STEPPER_TCMALLOC:-${pkgs.gperftools}/lib/libtcmalloc.so}"
            export STAIR_STEPPER_BENCHMARK="''${STAIR_STEPPER_BENCHMARK:-${workloadSrc}/benchmark.yml}"
            export STAIR_STEPPER_NIXPKGS_REV="${nixpkgs.rev or "unknown"}"
          '';
          command =
            name: args:
            pkgs.writeShellScriptBin name ''
              ${allocatorEnv}
              exec ${app}/bin/stair-stepper ${args} "$@"
            '';
          serveVariant = allocator: command "stair-stepper-${allocator}" "serve --allocator ${allocator}";
          variants = lib.genAttrs [
            "glibc"
            "jemalloc"
            "mimalloc"
            "tcmalloc"
          ] serveVariant;
          experiment = command "stair-stepper-experiment" "experiment";
          toApp = drv: name: {
            type = "app";
            program = "${drv}/bin/${name}";
          };
          devPython = python.withPackages (ps: runtimeDeps ps ++ [ ps.pytest ]);
        in
        {
          packages = variants // {
            default = app;
            stair-stepper = app;
            inherit experiment;
          };

          apps =
            lib.mapAttrs (name: drv: toApp drv "stair-stepper-${name}") variants
            // {
              default = toApp experiment "stair-stepper-experiment";
              experiment = toApp experiment "stair-stepper-experiment";
            };

          devShells.default = pkgs.mkShell {
            packages = [
              devPython
              pkgs.ruff
              pkgs.drill
              pkgs.jemalloc
              pkgs.mimalloc
              pkgs.gperftools
              pkgs.nixfmt
            ];
            shellHook = ''
              ${allocatorEnv}
              # The checkout itself, live: src/ on PYTHONPATH (stair_stepper finds analysis/
              # beside it) and a `stair-stepper` command for it in .nix-dev/bin.
              export PYTHONPATH="$PWD/src''${PYTHONPATH:+:$PYTHONPATH}"
              mkdir -p .nix-dev/bin
              printf '#!/bin/sh\nexec python -m stair_stepper "$@"\n' > .nix-dev/bin/stair-stepper
              chmod +x .nix-dev/bin/stair-stepper
              export PATH="$PWD/.nix-dev/bin:$PATH"
              echo "stair-stepper dev shell (pinned nixpkgs ${nixpkgs.rev or "unknown"}):" >&2
              echo "  stair-stepper serve --allocator jemalloc    # serve a variant on localhost:3000" >&2
              echo "  drill --benchmark benchmark.yml --stats     # load it with real drill (another shell)" >&2
              echo "  stair-stepper experiment                    # the main job" >&2
            '';
          };

          checks = {
            package = app;
            tests = pkgs.runCommand "stair-stepper-tests" { nativeBuildInputs = [ devPython ]; } ''
              cp -r ${testSrc} work && chmod -R u+w work && cd work
              patchShebangs tests/fakes
              ${allocatorEnv}
              export HOME="$TMPDIR" PYTHONPATH="${library}/${python.sitePackages}"
              python -m pytest -q -p no:cacheprovider
              touch "$out"
            '';
            ruff = pkgs.runCommand "stair-stepper-ruff" { nativeBuildInputs = [ pkgs.ruff ]; } ''
              cd ${testSrc}
              ruff check --no-cache .
              touch "$out"
            '';
          };

          formatter = pkgs.nixfmt;
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
