# STAND-IN FOR NIXPKGS, FOR TESTS ONLY: see ../README.md. Every package here is
# backed by a program or library of the host; nothing is built from source.
{
  description = "host-backed stand-in for the parts of nixpkgs that stair-stepper's flake uses";

  outputs =
    { self }:
    let
      host = import ./host.nix; # written by tests/test_nix.py
      inherit (builtins) listToAttrs map concatStringsSep attrValues;

      lib = rec {
        genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
        mapAttrs = builtins.mapAttrs;
        makeBinPath = pkgs: concatStringsSep ":" (map (p: "${p}/bin") pkgs);
        fileset = {
          unions = paths: paths;
          toSource =
            { root, fileset }:
            let
              rootStr = toString root;
              wanted = map toString fileset;
              keep =
                path: _type:
                builtins.any (
                  w:
                  path == w
                  || builtins.substring 0 (builtins.stringLength w + 1) path == w + "/"
                  || builtins.substring 0 (builtins.stringLength path + 1) w == path + "/"
                ) wanted;
            in
            builtins.path {
              path = root;
              name = "source";
              filter = keep;
            };
        };
      };

      pkgsFor =
        system:
        let
          sh = "/bin/sh";
          mk =
            name: script: env:
            derivation (
              {
                inherit name system;
                # dash, not bash: under this machine's Nix 2.8, a bash builder whose
                # last command is external is often killed (signal 9); dash is not.
                builder = sh;
                # -e -u: nixpkgs' stdenv (pkgs/stdenv/generic/setup.sh) runs every phase under
                # `set -eu -o pipefail`, so a failing step fails the build; dash has no pipefail.
                args = [
                  "-e"
                  "-u"
                  "-c"
                  script
                ];
                PATH = "/usr/bin:/bin";
              }
              // env
            );
          hostLib =
            name: target: file:
            mk name "mkdir -p $out/lib && cp ${target} $out/lib/${file}" { };
          wrapperBin =
            name: target:
            mk name ''
              mkdir -p $out/bin
              printf '#!${sh}\nexec %s "$@"\n' '${target}' > $out/bin/${name}
              chmod +x $out/bin/${name}
            '' { };
          placeholderBin =
            name:
            mk name ''
              mkdir -p $out/bin
              printf '#!${sh}\necho "stand-in nixpkgs: ${name} is not available on this machine" >&2\nexit 127\n' > $out/bin/${name}
              chmod +x $out/bin/${name}
            '' { };
          sitePackages = "lib/python${host.pythonVersion}/site-packages";
          # tests/nixpkgs_shape.py holds the nixpkgs behaviours modelled here, in one place.
          shape = action: args: "${host.python} ${host.shape} ${action} --out $out ${args}";
          pythonPkgs = {
            # The host's per-package store paths (host.depsSiteArgs) already hold these; the names only
            # need to exist. Not modelled: each as its own derivation, propagated inputs.
            quart = "host:quart";
            hypercorn = "host:hypercorn";
            pyyaml = "host:pyyaml";
            aiohttp = "host:aiohttp";
            psutil = "host:psutil";
            matplotlib = "host:matplotlib";
            pytest = "host:pytest";
            pytest-xdist = "host:pytest-xdist";
            gunicorn = "host:gunicorn";
            uvicorn = "host:uvicorn";
            setuptools = "host:setuptools";
            pip = "host:pip";
            # nixpkgs: pkgs/development/interpreters/python/mk-python-derivation.nix installs the
            # wheel into $out/${sitePackages} and runs wrapPythonPrograms (wrap.sh) on $out/bin:
            # the console script runs the *bare* interpreter and adds $out's and every
            # dependency's site-packages with site.addsitedir inside the script; the shell
            # wrapper sets PATH and PYTHONNOUSERSITE=true, and no PYTHONPATH.
            buildPythonPackage =
              { pname, version, src, ... }:
              mk "${pname}-${version}" ''
                # stdenv's unpackPhase copies the source into the build folder, writable: the
                # build never writes into the store path of the source.
                cp -r ${src} "$TMPDIR/source" && chmod -R u+w "$TMPDIR/source"
                ${host.python} -m pip install --quiet --no-deps --no-build-isolation \
                  --no-cache-dir --target $out/${sitePackages} "$TMPDIR/source"
                rm -rf $out/${sitePackages}/bin
                ${shape "wrap-application" "--interpreter ${host.bare} --site-dir $out/${sitePackages} ${host.depsSiteArgs}"}
              '' { HOME = "/tmp"; };
            # nixpkgs: pkgs/development/interpreters/python/python-packages-base.nix changes only
            # passthru (name, pythonModule): the application is the same wrapped package.
            toPythonApplication = library: library;
          };
          # nixpkgs' python3: an interpreter that sees its standard library and nothing else.
          python3 = mk "python3-bare" "mkdir -p $out/bin && ln -s ${host.bare} $out/bin/python3" { } // {
            pkgs = pythonPkgs;
            inherit sitePackages;
            # nixpkgs: pkgs/development/interpreters/python/wrapper.nix: buildEnv
            # (pkgs/build-support/buildenv/builder.pl) of the interpreter and one store path per
            # package, whose bin/python3.X is a binary wrapper (makeBinaryWrapper) of the
            # interpreter; sys.executable is that wrapper, so a child started with it sees the
            # packages too (tests/nixpkgs_shape.py). Every package the flake asks for is in it
            # (host.depsSiteArgs). pytest's command is a script calling the environment's python.
            # Packages the function names that are derivations (stair-stepper itself) join the
            # environment with their own site-packages.
            withPackages =
              f:
              let
                built = builtins.filter (p: !builtins.isString p) (f pythonPkgs);
                builtArgs = concatStringsSep " " (map (p: "--site-dir ${p}/${sitePackages}") built);
              in
              mk "python3-bare-env" ''
                ${shape "with-packages" "${host.depsSiteArgs} ${builtArgs}"}
                rm -f $out/bin/pytest
                printf '#!${sh}\nexec %s -m pytest "$@"\n' "$out/bin/python3" > $out/bin/pytest
                chmod +x $out/bin/pytest
              '' { };
          };
          # Real drill (0.8.3, or what the test gives) when the host has it. Not modelled:
          # overrideAttrs patches nothing here, so this drill still has upstream's histogram bound.
          drill =
            (if host.drill != "" then wrapperBin "drill" host.drill else placeholderBin "drill")
            // {
              overrideAttrs = _: drill;
            };
        in
        {
          inherit python3;
          # Not modelled: a second interpreter version. The host has one Python, so the pin's
          # python312 is the same bare host interpreter here; the flake's wiring of it (its own
          # package set, environment and variable) is what this checks, not the version.
          python312 = python3;
          # nixpkgs: pkgs/by-name/tb/tbb_2022 (oneTBB), whose lib/ holds libtbbmalloc_proxy.so.
          tbb_2022 = hostLib "tbb-host" host.tbbmalloc "libtbbmalloc_proxy.so";
          jemalloc = hostLib "jemalloc-host" host.jemalloc "libjemalloc.so";
          mimalloc = hostLib "mimalloc-host" host.mimalloc "libmimalloc.so";
          gperftools = hostLib "gperftools-host" host.tcmalloc "libtcmalloc.so";
          ruff = wrapperBin "ruff" host.ruff;
          inherit drill;
          nixfmt-tree = placeholderBin "treefmt";
          writeShellScriptBin =
            name: text:
            mk name ''
              mkdir -p $out/bin
              cat > $out/bin/${name} <<'STANDIN_EOF'
              #!${sh}
              ${text}
              STANDIN_EOF
              chmod +x $out/bin/${name}
            '' { };
          runCommand =
            name: env: script:
            mk name script (removeAttrs env [ "nativeBuildInputs" ]);
          mkShell =
            { packages ? [ ], shellHook ? "", ... }:
            mk "stand-in-shell" "echo 'a shell, not a build' > $out" {
              builder = "/bin/bash"; # `nix develop` insists on a bash builder
              outputs = [ "out" ]; # its get-env.sh writes to each of $outputs
              PATH = "${lib.makeBinPath packages}:/usr/bin:/bin";
              inherit shellHook;
            };
        };
    in
    {
      inherit lib;
      # A github input's `rev` is its locked revision; a path: input has none, so the stand-in
      # offers the one flake.lock pins (host.nix), as `nixpkgs.rev` reads for the real input.
      rev = host.nixpkgsRev;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
    };
}
