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
                args = [
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
          pythonPkgs = {
            # The host venv already holds these; the names only need to exist.
            quart = "host:quart";
            hypercorn = "host:hypercorn";
            pyyaml = "host:pyyaml";
            aiohttp = "host:aiohttp";
            matplotlib = "host:matplotlib";
            pytest = "host:pytest";
            setuptools = "host:setuptools";
            pip = "host:pip";
            buildPythonPackage =
              { pname, version, src, ... }:
              mk "${pname}-${version}" ''
                ${host.python} -m pip install --quiet --no-deps --no-build-isolation \
                  --no-cache-dir --target $out/${sitePackages} ${src}
              '' { HOME = "/tmp"; };
            toPythonApplication =
              library:
              mk "${library.name}-app" ''
                mkdir -p $out/bin
                printf '#!${sh}\nPYTHONPATH=%s${"\${PYTHONPATH:+:$PYTHONPATH}"} exec %s -m stair_stepper "$@"\n' \
                  '${library}/${sitePackages}' '${host.python}' > $out/bin/stair-stepper
                chmod +x $out/bin/stair-stepper
              '' { };
          };
          python3 = wrapperBin "python3-host" host.python // {
            pkgs = pythonPkgs;
            inherit sitePackages;
            withPackages =
              f:
              mk "python3-host-env" ''
                mkdir -p $out/bin
                for name in python python3; do
                  printf '#!${sh}\nexec %s "$@"\n' '${host.python}' > $out/bin/$name
                done
                printf '#!${sh}\nexec %s -m pytest "$@"\n' '${host.python}' > $out/bin/pytest
                chmod +x $out/bin/*
              '' { };
          };
        in
        {
          inherit python3;
          jemalloc = hostLib "jemalloc-host" host.jemalloc "libjemalloc.so";
          mimalloc = hostLib "mimalloc-host" host.mimalloc "libmimalloc.so";
          gperftools = hostLib "gperftools-host" host.tcmalloc "libtcmalloc.so";
          ruff = wrapperBin "ruff" host.ruff;
          drill = placeholderBin "drill";
          nixfmt = placeholderBin "nixfmt";
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
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
    };
}
