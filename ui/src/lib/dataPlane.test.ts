import { describe, expect, it } from "vitest";
import { pickDataPlane } from "./dataPlane";

const legacy = { id: "apiary-dp", federated: false, status: "active" };
const local = { id: "dp-local", federated: true, status: "active" };
const remote = { id: "dp-eu", federated: true, status: "active" };

describe("pickDataPlane", () => {
  it("picks the data plane the project is assigned to, wherever it is listed", () => {
    expect(pickDataPlane([legacy, local, remote], "dp-eu")).toBe(remote);
    expect(pickDataPlane([legacy, local], "dp-local")).toBe(local);
  });

  it("finds none when the assigned data plane is not listed (never another one)", () => {
    expect(pickDataPlane([legacy, local], "dp-gone")).toBeUndefined();
  });

  it("serves an unassigned project from a legacy data plane, else the first listed", () => {
    expect(pickDataPlane([local, legacy], null)).toBe(legacy);
    expect(pickDataPlane([{ ...legacy, status: "revoked" }, local], undefined)).toBe(local);
    expect(pickDataPlane([], null)).toBeUndefined();
  });
});
