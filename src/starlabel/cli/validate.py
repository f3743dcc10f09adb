"""`starlabel validate`: the paper's Sect. 5 validation (benchmarks, seismic, clusters, discs, orbits, ages, observed).

    starlabel validate <analysis> LABELS.fits CATALOGUE.fits --out DIR [inputs and cuts]
    starlabel validate all        LABELS.fits CATALOGUE.fits --out DIR [inputs and cuts]

Writes <analysis>.fits, <analysis>_summary.csv, figures and validate.json into DIR; an analysis
without its input (e.g. no --seismic table) is skipped with a message.
"""

ANALYSES = ("benchmarks", "seismic", "clusters", "discs", "orbits", "ages", "observed")


def add_parser(sub):
    p = sub.add_parser("validate", help="Sect. 5 validation: benchmarks, seismic log g, clusters, discs, orbits, ages",
                       description=__doc__)
    p.add_argument("analysis", choices=(*ANALYSES, "all"), help="which analysis ('all': every one with its inputs)")
    p.add_argument("labels", help="LABELS.fits from `starlabel predict` (CNAME, <LABEL>_CNN, optional SET/SNR/INNER)")
    p.add_argument("catalogue", help="catalogue (GES columns: CNAME, GES_TYPE, OBJECT, RA, DEC, VRAD, PARALLAX, ...)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--truth", help="truth table (mock survey truth.fits): purity, recall, the observed analysis")
    p.add_argument("--seismic", help="asteroseismic log g table (CNAME, LOGG, E_LOGG), e.g. the mock's seismic.fits")
    p.add_argument("--reference", help="benchmark reference table joined by name (e.g. ges_idr5_benchmarks.fits)")
    p.add_argument("--ages", help="isochrone ages: UniDAM output (id, age_mean, age_err) or CNAME + AGE [+ E_AGE]")
    p.add_argument("--model", help="ensemble bundle: its split.json picks the test set for discs")
    g = p.add_argument_group("cluster membership cuts")
    g.add_argument("--cluster-radius", type=float, help="search radius in deg (default: the centres table's)")
    g.add_argument("--cluster-rv-tol", type=float, default=20.0, help="|VRAD - RV_cluster| limit, km/s (20)")
    g.add_argument("--cluster-feh-tol", type=float, default=0.3, help="|[Fe/H] - [Fe/H]_cluster| limit, dex (0.3)")
    g.add_argument("--cluster-feh-source", choices=("catalogue", "cnn"), default="catalogue")
    g = p.add_argument_group("discs (HDBSCAN)")
    g.add_argument("--min-cluster-size", type=int, help="HDBSCAN min_cluster_size (default 5%% of the sample)")
    g.add_argument("--min-samples", type=int, default=10, help="HDBSCAN min_samples (10)")
    g.add_argument("--all-types", action="store_true", help="cluster every star, not only GES_TYPE GE_MW* field stars")
    g = p.add_argument_group("orbits (galpy)")
    g.add_argument("--orbit-gyr", type=float, default=5.0, help="integration time, Gyr (5)")
    g.add_argument("--orbit-steps", type=int, default=1001, help="stored time steps (1001)")
    g.add_argument("--max-rel-parallax-error", type=float, default=0.2)
    g.add_argument("--cores", type=int, default=1, help="galpy numcores")
    g = p.add_argument_group("ages (turn-off box in the CNN Kiel diagram)")
    g.add_argument("--turnoff-teff-min", type=float, default=5500.0)
    g.add_argument("--turnoff-logg", type=float, nargs=2, default=(3.7, 4.2), metavar=("MIN", "MAX"))
    p.set_defaults(func=run)


def run(args):
    from ..validation import ClusterCuts, DiscSettings, OrbitSettings, TurnOffBox
    from ..stages.validate import validate as validate_all

    analyses = ANALYSES if args.analysis == "all" else (args.analysis,)
    results = validate_all(
        args.labels, args.catalogue, args.out, truth=args.truth, seismic=args.seismic, reference=args.reference,
        ages=args.ages, model_dir=args.model, analyses=analyses,
        cluster_cuts=ClusterCuts(radius_deg=args.cluster_radius, rv_tol=args.cluster_rv_tol,
                                 feh_tol=args.cluster_feh_tol, feh_source=args.cluster_feh_source),
        disc_settings=DiscSettings(min_cluster_size=args.min_cluster_size, min_samples=args.min_samples,
                                   field_types=None if args.all_types else ("GE_MW",)),
        orbit_settings=OrbitSettings(integrate_gyr=args.orbit_gyr, n_steps=args.orbit_steps,
                                     max_rel_parallax_error=args.max_rel_parallax_error, numcores=args.cores),
        turnoff=TurnOffBox(teff_min=args.turnoff_teff_min, logg_min=args.turnoff_logg[0],
                           logg_max=args.turnoff_logg[1]))
    wanted = [a for a in analyses if a in results]
    failed = [a for a in wanted if results[a]["status"] == "failed"]
    if args.analysis != "all" and results.get(args.analysis, {}).get("status") == "skipped":
        raise ValueError(f"validate {args.analysis}: {results[args.analysis]['reason']}")
    return 1 if failed else 0
